"""Export and import of a project: memories, every history row and the feedback, ids and timestamps kept.

The format is JSON Lines: a header line, then one object per line. Version 2 (written now) tags each
line with its ``kind``:

- ``memory``: one memory with its vector (base64 float32) and its history rows;
- ``history``: one history row of a memory that is not among the exported memories (a deleted one);
- ``feedback``: one feedback row (Mem0's ``POST /v1/feedback/``).

Version 1 files (memories only, no ``kind``) are still read. API keys and webhooks (whose signing
secrets they hold) are never exported: a restored deployment issues new keys and registers its
webhooks again.

``engram export`` / ``engram import`` use it for back-up and restore; the API's export job returns
the same objects (memories without vectors) in its result.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import numpy as np

from config.container import Container
from engram.filters import Node
from engram.ports import MemoryRecord
from engram.scope import Scope
from schemas.memories import HistoryEntry

FORMAT = "engram-export"
VERSION = 2
READABLE_VERSIONS = (1, 2)
KINDS = ("memory", "history", "feedback")
NOT_EXPORTED = ("api_keys", "webhooks")
# The project's own settings, carried in the header and restored with a recreated project.
PROJECT_SETTINGS = (
    "custom_instructions",
    "custom_categories",
    "custom_fact_extraction_prompt",
    "custom_update_memory_prompt",
)


@dataclass
class Export:
    """What an export holds: the header, the memories (each with its history), the other history rows, feedback."""

    head: dict[str, Any]
    memories: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        """The API export job's result: the same objects, keyed by kind."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "count": len(self.memories),
            "memories": self.memories,
            "history": self.history,
            "feedback": self.feedback,
        }


def memory_document(record: MemoryRecord, history: Sequence[HistoryEntry], *, with_vector: bool) -> dict[str, Any]:
    s = record.scope
    doc: dict[str, Any] = {
        "kind": "memory",
        "id": record.id,
        "memory": record.memory,
        "hash": record.hash,
        "user_id": s.user_id or None,
        "agent_id": s.agent_id or None,
        "run_id": s.run_id or None,
        "app_id": record.app_id or None,
        "metadata": record.metadata,
        "categories": record.categories,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "expiration_date": record.expiration_date,
        "immutable": record.immutable,
        "history": [h.model_dump(mode="json") for h in history],
    }
    if with_vector:
        doc["vector"] = base64.b64encode(np.asarray(record.vector, dtype="<f4").tobytes()).decode()
    return doc


def collect(c: Container, project_id: str, where: Node | None = None, *, with_vectors: bool) -> Export:
    """The memories matching ``where`` with their history and feedback.

    A whole-project export (no filter) also carries the history and feedback of deleted memories.
    A filtered one cannot: a deleted memory's scope and metadata went with it, so the filter cannot
    be evaluated on it.
    """
    records = c.vector_store.list(project_id=project_id, where=where, limit=10**9, include_expired=True)
    records = sorted(records, key=lambda r: (r.created_at, r.id))
    if where is None:
        by_memory: dict[str, list[HistoryEntry]] = {}
        for entry in c.exports.project_history(project_id):
            by_memory.setdefault(entry.memory_id, []).append(entry)
        memories = [memory_document(r, by_memory.pop(r.id, []), with_vector=with_vectors) for r in records]
        orphans = sorted((e for rows in by_memory.values() for e in rows), key=lambda e: (e.created_at, e.id))
        history = [{"kind": "history", **e.model_dump(mode="json")} for e in orphans]
        feedback = c.feedback.for_project(project_id)
    else:
        memories = [
            memory_document(r, c.history.for_memory(project_id, r.id), with_vector=with_vectors) for r in records
        ]
        history = []
        feedback = c.feedback.for_project(project_id, [r.id for r in records])
    head = header(c, project_id, len(memories), history=len(history), feedback=len(feedback))
    return Export(head, memories, history, [{"kind": "feedback", **f} for f in feedback])


def header(c: Container, project_id: str, count: int, *, history: int = 0, feedback: int = 0) -> dict[str, Any]:
    project = c.tenancy.project(project_id) or {}
    return {
        "format": FORMAT,
        "version": VERSION,
        "project_id": project_id,
        "project_name": project.get("name"),
        "org_id": project.get("org_id"),
        "project_settings": {k: project.get(k) for k in PROJECT_SETTINGS},
        "exported_at": datetime.now(UTC).isoformat(),
        "embedder": {"model": c.settings.embedder.model, "dimensions": c.settings.embedder.dimensions},
        "count": count,
        "history_count": history,
        "feedback_count": feedback,
        "not_exported": list(NOT_EXPORTED),
    }


def write_export(c: Container, project_id: str, out: IO[str]) -> Export:
    export = collect(c, project_id, with_vectors=True)
    out.write(json.dumps(export.head) + "\n")
    for doc in (*export.memories, *export.history, *export.feedback):
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return export


def read_export(lines: Iterable[str]) -> Export:
    """Parse a file of any readable version; a clear ``ValueError`` for anything else."""
    iterator = (line for line in lines if line.strip())
    try:
        head = json.loads(next(iterator))
    except StopIteration:
        raise ValueError("empty file: not an engram export") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} file")
    if head.get("version") not in READABLE_VERSIONS:
        raise ValueError(
            f"{FORMAT} version {head.get('version')!r}; this engram reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (a newer engram wrote it?)"
        )
    export = Export(head)
    for number, line in enumerate(iterator, 2):
        doc = json.loads(line)
        kind = doc.get("kind", "memory") if head["version"] >= 2 else "memory"
        if kind not in KINDS:
            raise ValueError(f"line {number}: unknown kind {kind!r}")
        {"memory": export.memories, "history": export.history, "feedback": export.feedback}[kind].append(doc)
    found = {"count": export.memories, "history_count": export.history, "feedback_count": export.feedback}
    for key, docs in found.items():
        if key in head and head[key] != len(docs):
            raise ValueError(f"the header announces {head[key]} for {key} but the file holds {len(docs)}: truncated?")
    return export


def import_documents(c: Container, project_id: str, head: dict[str, Any], docs: list[dict[str, Any]]) -> int:
    """Restore memories and their history as exported. Re-embeds when the embedder's dimensions differ
    or a document has no vector (the API export job's memories)."""
    same_space = head.get("embedder", {}).get("dimensions") == c.settings.embedder.dimensions
    missing = [d["memory"] for d in docs if not same_space or "vector" not in d]
    embedded = iter(c.embedder.embed(missing) if missing else [])
    vectors = [_vector(d) if same_space and "vector" in d else next(embedded) for d in docs]
    records = [
        MemoryRecord(
            id=d["id"],
            memory=d["memory"],
            hash=d["hash"],
            scope=Scope.of(project_id, d.get("user_id"), d.get("agent_id"), d.get("run_id")),
            vector=list(vector),
            created_at=datetime.fromisoformat(d["created_at"]),
            updated_at=datetime.fromisoformat(d["updated_at"]),
            metadata=d.get("metadata") or {},
            app_id=d.get("app_id") or "",
            categories=d.get("categories") or [],
            expiration_date=d.get("expiration_date"),
            immutable=bool(d.get("immutable")),
        )
        for d, vector in zip(docs, vectors, strict=True)
    ]
    # Written scope by scope: each write's rows land side by side, and a search reads one scope's rows.
    records.sort(key=lambda r: (r.scope.user_id, r.scope.agent_id, r.scope.run_id))
    for start in range(0, len(records), 500):
        c.vector_store.upsert(records[start : start + 500])
    c.exports.restore_history(project_id, [h for d in docs for h in d.get("history", [])])
    return len(records)


def import_rest(c: Container, project_id: str, export: Export) -> None:
    """The history rows of deleted memories and the feedback (idempotent: a re-import adds nothing)."""
    c.exports.restore_history(project_id, export.history)
    c.feedback.restore(project_id, export.feedback)


def _vector(doc: dict[str, Any]) -> list[float]:
    return np.frombuffer(base64.b64decode(doc["vector"]), dtype="<f4").tolist()
