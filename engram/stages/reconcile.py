"""Stage 3: reconcile new facts with what the scope already holds, then apply the decisions.

Split in two so a redelivered task changes nothing: ``plan_changes`` decides (and the caller
persists the plan), ``apply_plan`` writes it with deterministic ids and upserts (appends on its
first application), so applying the same plan twice leaves the stores as applying it once. Both run
under the scope lock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engram import categories, metrics
from engram.filters import And, Node, eq
from engram.ids import content_hash, history_id_for, memory_id_for
from engram.ports import LLM, Embedder, ExistingMemory, MemoryRecord, VectorStore
from engram.scope import Scope
from engram.sql.history import HistoryChange
from schemas.jobs import MemoryEvent
from schemas.llm import MemoryDecision
from schemas.memories import MemoryCreate

log = logging.getLogger(__name__)

# Cap on existing memories shown to the decision: keeps prompts bounded for chatty users.
MAX_EXISTING_SHOWN = 50


@dataclass(frozen=True, slots=True)
class WriteOptions:
    """What the add request says about the memories it creates."""

    metadata: dict[str, Any] | None = None
    app_id: str = ""
    expiration_date: str | None = None
    immutable: bool = False
    created_at: datetime | None = None  # when the conversation happened, if the client said
    categories: dict[str, str] | None = None  # name → description; None: no categorisation

    @classmethod
    def from_request(cls, request: MemoryCreate, project_categories: Any = None) -> WriteOptions:
        return cls(
            metadata=request.metadata,
            app_id=request.app_id or "",
            expiration_date=request.expiration_date,
            immutable=request.immutable,
            created_at=datetime.fromtimestamp(request.timestamp, UTC) if request.timestamp is not None else None,
            categories=categories.from_custom(request.custom_categories or project_categories),
        )


def find_existing(vectors: Sequence[Sequence[float]], store: VectorStore, scope: Scope, k: int) -> list[MemoryRecord]:
    """The union of each fact's ``k`` nearest memories in the exact scope, best score first."""
    found: dict[str, MemoryRecord] = {}
    # With vectors: the decision compares every fact with every memory found (similarity_matrix).
    nearest = store.nearest_each(
        vectors, project_id=scope.project_id, where=exact_scope(scope), limit=k, include_vectors=True
    )
    for record in (r for per_fact in nearest for r in per_fact):
        kept = found.get(record.id)
        if kept is None or (record.score or 0) > (kept.score or 0):
            found[record.id] = record
    ranked = sorted(found.values(), key=lambda r: r.score or 0.0, reverse=True)
    return ranked[:MAX_EXISTING_SHOWN]


def exact_scope(scope: Scope) -> Node:
    """Exactly this scope: an id left out must be empty on the memory too (the scope lock's key)."""
    return And((eq("user_id", scope.user_id), eq("agent_id", scope.agent_id), eq("run_id", scope.run_id)))


def similarity_matrix(vectors: Sequence[Sequence[float]], existing: Sequence[MemoryRecord]) -> list[list[float]]:
    if not vectors or not existing:
        return [[] for _ in vectors]
    a = np.asarray(vectors, dtype="float32")
    b = np.asarray([r.vector for r in existing], dtype="float32")
    return (a @ b.T).tolist()


def plan_changes(
    *,
    job_id: str,
    facts: Sequence[str],
    vectors: Sequence[Sequence[float]],
    scope: Scope,
    store: VectorStore,
    llm: LLM,
    embedder: Embedder,
    infer: bool,
    k: int,
    roles: Sequence[str] | None = None,
    custom_prompt: str | None = None,
    now: datetime | None = None,
    options: WriteOptions | None = None,
) -> list[dict[str, Any]]:
    """Decide ADD / UPDATE / DELETE for each fact. NONE decisions leave no entry.

    Each entry: ``event, memory_id, text, previous, created_at`` and either ``fact_index`` (reuse
    that fact's vector) or ``vector`` (the LLM rewrote the text, so it was embedded again).
    """
    options = options or WriteOptions()
    planned_at = (options.created_at or now or datetime.now(UTC)).isoformat()
    if not infer:
        plan = [
            {
                "event": "ADD",
                "memory_id": memory_id_for(job_id, i),
                "text": fact,
                "previous": None,
                "fact_index": i,
                "created_at": planned_at,
                "role": roles[i] if roles else None,
            }
            for i, fact in enumerate(facts)
        ]
        _categorise(plan, vectors, embedder, options)
        return plan
    if not facts:
        return []
    # Immutable memories are never offered to the decision, so it cannot update or delete them.
    existing_records = [r for r in find_existing(vectors, store, scope, k) if not r.immutable]
    existing = [ExistingMemory(r.id, r.memory, r.score or 0.0) for r in existing_records]
    if existing or custom_prompt is not None:
        decisions = llm.decide_updates(
            facts, existing, similarity=similarity_matrix(vectors, existing_records), custom_prompt=custom_prompt
        )
    else:
        # Nothing in the scope to reconcile against (its first conversation, or immutable memories only):
        # the decision could only add every fact, so the LLM is not asked (one call for the conversation,
        # not two). A custom update prompt is always asked: it may drop or rewrite facts.
        metrics.DECISIONS_SKIPPED.inc()
        decisions = [MemoryDecision(id=f"new:{i}", text=fact, event="ADD") for i, fact in enumerate(facts)]
    plan = _resolve(job_id, decisions, facts, existing_records, planned_at)
    _embed_rewritten(plan, facts, embedder)
    _categorise(plan, vectors, embedder, options)
    return plan


def _categorise(
    plan: list[dict[str, Any]], vectors: Sequence[Sequence[float]], embedder: Embedder, options: WriteOptions
) -> None:
    targets = [p for p in plan if p["event"] != "DELETE"]
    if not targets or options.categories is None:
        return
    chosen = categories.assign(
        [p["vector"] if "vector" in p else vectors[p["fact_index"]] for p in targets], embedder, options.categories
    )
    for entry, names in zip(targets, chosen, strict=True):
        entry["categories"] = names


def _resolve(
    job_id: str,
    decisions: Sequence[MemoryDecision],
    facts: Sequence[str],
    existing: Sequence[MemoryRecord],
    planned_at: str,
) -> list[dict[str, Any]]:
    """Map the decision's small ids back to memory ids; drop what cannot be applied."""
    plan: list[dict[str, Any]] = []
    touched: set[str] = set()
    fact_position = {f: i for i, f in enumerate(facts)}
    extra_adds = 0
    entry: dict[str, Any]
    for decision in decisions:
        text = decision.text.strip()
        if decision.event == "NONE":
            continue
        if decision.event == "ADD":
            if not text:
                continue
            index = _new_index(decision.id)
            if index is None or index >= len(facts) or index in {p.get("add_index") for p in plan}:
                # The LLM invented an id: give the ADD a slot past the facts, still deterministic.
                index = len(facts) + extra_adds
                extra_adds += 1
            entry = {
                "event": "ADD",
                "memory_id": memory_id_for(job_id, index),
                "previous": None,
                "created_at": planned_at,
                "add_index": index,
            }
        else:
            target = _existing_index(decision.id, len(existing))
            if target is None:
                log.warning("decision %s refers to unknown memory id %r; skipped", decision.event, decision.id)
                continue
            record = existing[target]
            if record.id in touched:
                continue
            touched.add(record.id)
            if decision.event == "DELETE":
                text = record.memory
            elif not text or text == record.memory:
                continue
            entry = {
                "event": decision.event,
                "memory_id": record.id,
                "previous": record.memory,
                "created_at": record.created_at.isoformat(),
                "metadata": record.metadata,
            }
        entry["text"] = text
        if text in fact_position:
            entry["fact_index"] = fact_position[text]
        plan.append(entry)
    return plan


def _new_index(decision_id: str) -> int | None:
    if decision_id.startswith("new:") and decision_id[4:].isdigit():
        return int(decision_id[4:])
    return None


def _existing_index(decision_id: str, count: int) -> int | None:
    return int(decision_id) if decision_id.isdigit() and int(decision_id) < count else None


def _embed_rewritten(plan: list[dict[str, Any]], facts: Sequence[str], embedder: Embedder) -> None:
    rewritten = [p for p in plan if p["event"] != "DELETE" and "fact_index" not in p]
    if rewritten:
        for entry, vector in zip(rewritten, embedder.embed([p["text"] for p in rewritten]), strict=True):
            entry["vector"] = vector


def mark_overtaken(
    plan: Sequence[dict[str, Any]],
    *,
    vectors: Sequence[Sequence[float]],
    scope: Scope,
    store: VectorStore,
    infer: bool = True,
) -> list[dict[str, Any]]:
    """Check a plan an earlier attempt saved (and died before committing) against the store as it is now.

    Issue #8: the dead attempt's scope lock expires before its message comes back, so other jobs of the
    scope may have run in between, seeing whatever part of this plan reached the vector store. Applied
    as saved, the plan would ADD a fact one of them added meanwhile (a duplicate) or put back a text one
    of them has since updated (a lost update). So an entry is marked ``overtaken`` (applied as NONE) when
    - ADD: another memory of the scope now holds the same text (with ``infer``: raw messages stored
      verbatim may repeat), or its own memory holds another text;
    - UPDATE: its memory is gone, or holds neither the text planned over nor the planned one.
    An entry whose memory shows no change since planning, or this plan's own write, is kept; DELETE is
    always kept (deleting what is gone is a no-op).
    """
    checked = []
    for entry in plan:
        entry = dict(entry)
        entry.pop("overtaken", None)
        if entry["event"] != "DELETE" and _overtaken(entry, vectors, scope, store, infer):
            log.info(
                "plan entry %s of memory %s was overtaken by another job; skipped", entry["event"], entry["memory_id"]
            )
            entry["overtaken"] = True
        checked.append(entry)
    return checked


def _overtaken(
    entry: dict[str, Any], vectors: Sequence[Sequence[float]], scope: Scope, store: VectorStore, infer: bool
) -> bool:
    current = store.get(entry["memory_id"], scope.project_id)
    if entry["event"] == "UPDATE":
        return current is None or current.memory not in (entry["previous"], entry["text"])
    if current is not None:  # ADD, and this plan's write got through before the crash
        return current.memory != entry["text"]
    if not infer:
        return False
    vector = entry["vector"] if "vector" in entry else vectors[entry["fact_index"]]
    same = content_hash(entry["text"])
    nearest = store.search(vector, project_id=scope.project_id, where=exact_scope(scope), limit=5, include_expired=True)
    return any(r.hash == same and r.id != entry["memory_id"] for r in nearest)


def apply_plan(
    *,
    job_id: str,
    plan: Sequence[dict[str, Any]],
    vectors: Sequence[Sequence[float]],
    scope: Scope,
    store: VectorStore,
    options: WriteOptions | None = None,
    now: datetime | None = None,
    first_apply: bool = False,
) -> tuple[list[MemoryEvent], list[HistoryChange]]:
    """Write the plan to the vector store; return the events and history rows for the SQL commit.

    Idempotent: upserts by deterministic id, deletes of missing ids are no-ops, and the returned
    rows carry deterministic keys so recording them twice inserts them once. Entries marked
    ``overtaken`` (``mark_overtaken``) are skipped; the others keep their position, hence their keys.
    ``first_apply``: the plan was just saved by this caller (``JobStore.save_plan``), so no earlier
    attempt can have written its ADDs; they are appended (``VectorStore.insert``) rather than upserted.
    """
    options = options or WriteOptions()
    updated_at = now or datetime.now(UTC)
    upserts: list[MemoryRecord] = []
    inserts: list[MemoryRecord] = []
    deletes: list[str] = []
    events: list[MemoryEvent] = []
    history: list[HistoryChange] = []
    for seq, entry in enumerate(plan):
        if entry.get("overtaken"):
            continue
        event = entry["event"]
        events.append(
            MemoryEvent(id=entry["memory_id"], memory=entry["text"], event=event, previous_memory=entry["previous"])
        )
        history.append(
            HistoryChange(
                id=history_id_for(job_id, seq),
                memory_id=entry["memory_id"],
                old_memory=entry["previous"],
                new_memory=None if event == "DELETE" else entry["text"],
                event=event,
                role=entry.get("role"),
                job_id=job_id,
            )
        )
        if event == "DELETE":
            deletes.append(entry["memory_id"])
            continue
        vector = entry["vector"] if "vector" in entry else vectors[entry["fact_index"]]
        added = event == "ADD"
        record_metadata = dict(entry.get("metadata") or options.metadata or {})
        if entry.get("role"):
            record_metadata.setdefault("role", entry["role"])
        (inserts if added and first_apply else upserts).append(
            MemoryRecord(
                id=entry["memory_id"],
                memory=entry["text"],
                hash=content_hash(entry["text"]),
                scope=scope,
                vector=list(vector),
                created_at=datetime.fromisoformat(entry["created_at"]),
                updated_at=updated_at,
                metadata=record_metadata,
                app_id=options.app_id if added else entry.get("app_id") or "",
                categories=entry.get("categories", []),
                expiration_date=options.expiration_date if added else entry.get("expiration_date"),
                immutable=options.immutable and added,
            )
        )
    # A third-party store written before ``insert`` joined the port upserts them: the same rows.
    getattr(store, "insert", store.upsert)(inserts)
    store.upsert(upserts)
    store.delete(deletes, project_id=scope.project_id)
    return events, history
