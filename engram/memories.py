"""Direct memory operations (read, search, edit, delete, history, entities) used by the API.

Edits take the scope lock, like the pipeline's reconcile, so a manual edit never interleaves with
a job deciding about the same memories.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from config.container import Container
from engram import filters
from engram.errors import ImmutableMemoryError, NotFoundError
from engram.filters import Cond, FilterError, Node, eq
from engram.ids import content_hash
from engram.ports import MemoryRecord, SearchMode
from engram.sql.history import HistoryChange
from engram.webhooks import outbox
from schemas.jobs import MemoryEvent
from schemas.memories import HistoryEntry, MemoryPublic, ScopeFields

# Direct edits wait this long for a scope that a job is reconciling.
EDIT_LOCK_WAIT_SECONDS = 30.0
ENTITY_TYPES = {"user": "user_id", "agent": "agent_id", "app": "app_id", "run": "run_id"}


def to_public(record: MemoryRecord) -> MemoryPublic:
    s = record.scope
    return MemoryPublic(
        id=record.id,
        memory=record.memory,
        hash=record.hash,
        metadata=record.metadata or None,
        categories=record.categories,
        user_id=s.user_id or None,
        agent_id=s.agent_id or None,
        run_id=s.run_id or None,
        app_id=record.app_id or None,
        created_at=record.created_at,
        updated_at=record.updated_at,
        expiration_date=record.expiration_date,
        immutable=record.immutable,
        score=record.score,
    )


def build_where(
    raw_filters: dict[str, Any] | None,
    ids: ScopeFields | None = None,
    *,
    categories: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
) -> Node | None:
    """One filter tree from the v2 ``filters`` plus the older top-level parameters."""
    parts: list[Node | None] = [filters.parse(raw_filters)]
    if ids is not None:
        parts += [eq(k, getattr(ids, k)) for k in filters.SCOPE_FIELDS if getattr(ids, k)]
    if categories:
        parts.append(Cond("categories", "in", tuple(categories)))
    for key, value in (metadata or {}).items():
        parts.append(eq(f"metadata.{key}", value))
    if start_date:
        parts.append(Cond("created_at", "gte", filters.parse_time(start_date, "start_date")))
    if end_date:
        parts.append(Cond("created_at", "lte", filters.parse_time(end_date, "end_date")))
    return filters.all_of(*parts)


def require_scope(where: Node | None) -> Node:
    """Reads and deletes must say whose memories they mean (Mem0 requires it too)."""
    if where is None:
        raise FilterError("give filters (or user_id, agent_id, run_id, app_id) to say whose memories")
    return where


def search(
    c: Container,
    project_id: str,
    where: Node,
    query: str,
    *,
    limit: int,
    threshold: float | None,
    include_expired: bool = False,
    mode: SearchMode | None = None,
    alpha: float | None = None,
) -> list[MemoryPublic]:
    """Hybrid (keyword + vector) or vector search; ``None`` takes the deployment's default."""
    vector = c.embedder.embed([query])[0]
    records = c.vector_store.search(
        vector, project_id=project_id, where=where, limit=limit, threshold=threshold, include_expired=include_expired,
        query_text=query, mode=mode, alpha=alpha
    )
    return [to_public(r) for r in records]


def page(
    c: Container, project_id: str, where: Node, *, page: int, page_size: int, include_expired: bool = False
) -> tuple[int, list[MemoryPublic]]:
    store = c.vector_store
    total = store.count(project_id=project_id, where=where, include_expired=include_expired)
    records = store.list(
        project_id=project_id,
        where=where,
        limit=page_size,
        offset=(page - 1) * page_size,
        include_expired=include_expired,
    )
    return total, [to_public(r) for r in records]


def get(c: Container, project_id: str, memory_id: str) -> MemoryRecord:
    record = c.vector_store.get(memory_id, project_id)
    if record is None:
        raise NotFoundError(f"memory {memory_id} not found")
    return record


def update(
    c: Container,
    project_id: str,
    memory_id: str,
    *,
    text: str | None = None,
    metadata: dict[str, Any] | None = None,
    changes: set[str] | None = None,
    expiration_date: str | None = None,
    timestamp: Any = None,
) -> MemoryPublic:
    """Edit one memory; ``changes`` names the fields the caller set (so a null expiry clears it)."""
    changes = changes if changes is not None else {k for k, v in (("text", text), ("metadata", metadata)) if v}
    record = get(c, project_id, memory_id)
    with c.locks.hold(record.scope, wait_seconds=EDIT_LOCK_WAIT_SECONDS):
        record = get(c, project_id, memory_id)
        if record.immutable:
            raise ImmutableMemoryError(f"memory {memory_id} is immutable")
        old_text = _apply_edit(c, record, text, metadata, changes, expiration_date, timestamp)
        c.vector_store.upsert([record])
        _commit(c, project_id, [(record, "UPDATE", old_text)])
    return to_public(record)


def _apply_edit(
    c: Container,
    record: MemoryRecord,
    text: str | None,
    metadata: dict[str, Any] | None,
    changes: set[str],
    expiration_date: str | None,
    timestamp: Any,
) -> str:
    old_text = record.memory
    if "text" in changes and text is not None and text != record.memory:
        record.vector = c.embedder.embed([text])[0]
        record.memory = text
        record.hash = content_hash(text)
    if "metadata" in changes and metadata is not None:
        record.metadata = metadata
    if "expiration_date" in changes:
        record.expiration_date = expiration_date
    if "timestamp" in changes and timestamp is not None:
        record.created_at = filters.parse_time(timestamp, "timestamp")
    record.updated_at = datetime.now(UTC)
    return old_text


def delete(c: Container, project_id: str, memory_id: str) -> None:
    record = get(c, project_id, memory_id)
    with c.locks.hold(record.scope, wait_seconds=EDIT_LOCK_WAIT_SECONDS):
        c.vector_store.delete([memory_id], project_id=project_id)
        _commit(c, project_id, [(record, "DELETE", record.memory)])


def delete_records(c: Container, project_id: str, records: Sequence[MemoryRecord]) -> int:
    """Delete these memories, scope by scope under each scope's lock; every deletion goes to history."""
    for scope in {r.scope for r in records}:
        mine = [r for r in records if r.scope == scope]
        with c.locks.hold(scope, wait_seconds=EDIT_LOCK_WAIT_SECONDS):
            c.vector_store.delete([r.id for r in mine], project_id=project_id)
            _commit(c, project_id, [(r, "DELETE", r.memory) for r in mine])
    return len(records)


def _commit(c: Container, project_id: str, changes: Sequence[tuple[MemoryRecord, str, str]]) -> None:
    """History rows and their webhook deliveries in one transaction (the outbox), then send them.

    Each change is (the memory as it is now, UPDATE or DELETE, its previous text). The edit's own
    history id stands in for a job id: deliveries of one edit share it.
    """
    edit_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    history = [
        HistoryChange(
            str(uuid.uuid4()), r.id, old, None if event == "DELETE" else r.memory, event, actor_id="api", job_id=None
        )
        for r, event, old in changes
    ]
    announced = [
        MemoryEvent(
            id=r.id,
            memory=r.memory if event != "DELETE" else old,
            event=event,  # type: ignore[arg-type]
            previous_memory=old if event == "UPDATE" else None,
        )
        for r, event, old in changes
    ]
    with c.engine.begin() as conn:
        c.history.record(project_id, history, conn=conn, at=now)
        queued: list[Any] = []
        for scope in {r.scope for r, _, _ in changes}:
            events = [e for e, (r, _, _) in zip(announced, changes, strict=True) if r.scope == scope]
            ids = {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}
            items = outbox.memory_events(
                events, job_id=edit_id, project_id=project_id, scope={k: v for k, v in ids.items() if v}, at=now
            )
            queued += outbox.write(conn, project_id, edit_id, items, now)
    if queued and c.deliveries_sender is not None:
        c.deliveries_sender(queued)


def delete_matching(c: Container, project_id: str, where: Node) -> int:
    records = c.vector_store.list(project_id=project_id, where=where, limit=10**9, include_expired=True)
    return delete_records(c, project_id, records)


def history(c: Container, project_id: str, memory_id: str) -> list[HistoryEntry]:
    entries = c.history.for_memory(project_id, memory_id)
    if not entries and c.vector_store.get(memory_id, project_id) is None:
        raise NotFoundError(f"memory {memory_id} not found")
    return entries


def entities(c: Container, project_id: str) -> list[dict[str, Any]]:
    """Every user, agent, app and run of the project with its memory count (Mem0's ``users()``)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for record in c.vector_store.list(project_id=project_id, limit=10**9, include_expired=True):
        values = {
            "user": record.scope.user_id,
            "agent": record.scope.agent_id,
            "app": record.app_id,
            "run": record.scope.run_id,
        }
        for kind, name in values.items():
            if not name:
                continue
            entry = found.setdefault(
                (kind, name),
                {
                    "id": name,
                    "name": name,
                    "type": kind,
                    "total_memories": 0,
                    "created_at": record.created_at,
                    "updated_at": record.updated_at,
                },
            )
            entry["total_memories"] += 1
            entry["created_at"] = min(entry["created_at"], record.created_at)
            entry["updated_at"] = max(entry["updated_at"], record.updated_at)
    return sorted(found.values(), key=lambda e: (e["type"], e["name"]))


def delete_entity(c: Container, project_id: str, kind: str, name: str) -> int:
    field = ENTITY_TYPES.get(kind)
    if field is None:
        raise FilterError(f"entity type must be one of {', '.join(ENTITY_TYPES)}")
    count = delete_matching(c, project_id, eq(field, name))
    if count == 0:
        raise NotFoundError(f"{kind} {name!r} has no memories")
    return count


def get_many(c: Container, project_id: str, memory_ids: Sequence[str]) -> list[MemoryRecord]:
    """All of them or a NotFoundError naming the missing ones (a batch is all or nothing)."""
    records = {i: c.vector_store.get(i, project_id) for i in dict.fromkeys(memory_ids)}
    missing = [i for i, r in records.items() if r is None]
    if missing:
        raise NotFoundError(f"memories not found: {', '.join(missing[:20])}")
    return [r for r in records.values() if r is not None]


def batch_update(c: Container, project_id: str, items: Sequence[dict[str, Any]]) -> int:
    records = {r.id: r for r in get_many(c, project_id, [i["memory_id"] for i in items])}
    immutable = [r.id for r in records.values() if r.immutable]
    if immutable:
        raise ImmutableMemoryError(f"immutable memories: {', '.join(immutable[:20])}")
    for item in items:
        changes = {k for k in ("text", "metadata") if item.get(k) is not None}
        if changes:
            update(
                c, project_id, item["memory_id"], text=item.get("text"), metadata=item.get("metadata"), changes=changes
            )
    return len(items)


def batch_delete(c: Container, project_id: str, memory_ids: Sequence[str]) -> int:
    return delete_records(c, project_id, get_many(c, project_id, memory_ids))
