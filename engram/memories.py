"""Direct memory operations (read, search, edit, delete, history) used by the API.

Edits take the scope lock, like the pipeline's reconcile, so a manual edit never interleaves with
a job deciding about the same memories.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from config.container import Container
from engram.errors import NotFoundError
from engram.ids import content_hash
from engram.ports import MemoryRecord
from engram.sql.history import HistoryChange
from schemas.memories import HistoryEntry, MemoryPublic, ScopeFields

# Direct edits wait this long for a scope that a job is reconciling.
EDIT_LOCK_WAIT_SECONDS = 30.0


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
        score=record.score,
    )


def scope_filter(project_id: str, ids: ScopeFields, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Filters for reads: the ids the caller gave must match; the ones it left out are free."""
    filters: dict[str, Any] = {"project_id": project_id}
    for key in ("user_id", "agent_id", "run_id", "app_id"):
        value = getattr(ids, key)
        if value:
            filters[key] = value
    if metadata:
        filters["metadata"] = metadata
    return filters


def search(
    c: Container,
    project_id: str,
    ids: ScopeFields,
    query: str,
    *,
    limit: int,
    threshold: float | None,
    metadata: dict[str, Any] | None = None,
) -> list[MemoryPublic]:
    vector = c.embedder.embed([query])[0]
    records = c.vector_store.search(vector, scope_filter(project_id, ids, metadata), limit=limit, threshold=threshold)
    return [to_public(r) for r in records]


def list_memories(
    c: Container, project_id: str, ids: ScopeFields, *, limit: int, offset: int = 0
) -> list[MemoryPublic]:
    return [to_public(r) for r in c.vector_store.list(scope_filter(project_id, ids), limit=limit, offset=offset)]


def get(c: Container, project_id: str, memory_id: str) -> MemoryRecord:
    record = c.vector_store.get(memory_id, project_id)
    if record is None:
        raise NotFoundError(f"memory {memory_id} not found")
    return record


def update(
    c: Container, project_id: str, memory_id: str, *, text: str | None, metadata: dict[str, Any] | None
) -> MemoryPublic:
    record = get(c, project_id, memory_id)
    with c.locks.hold(record.scope, wait_seconds=EDIT_LOCK_WAIT_SECONDS):
        record = get(c, project_id, memory_id)
        old_text = record.memory
        if text is not None and text != record.memory:
            record.vector = c.embedder.embed([text])[0]
            record.memory = text
            record.hash = content_hash(text)
        if metadata is not None:
            record.metadata = metadata
        record.updated_at = datetime.now(UTC)
        c.vector_store.upsert([record])
        c.history.record(
            project_id,
            [HistoryChange(str(uuid.uuid4()), memory_id, old_text, record.memory, "UPDATE", actor_id="api")],
        )
    return to_public(record)


def delete(c: Container, project_id: str, memory_id: str) -> None:
    record = get(c, project_id, memory_id)
    with c.locks.hold(record.scope, wait_seconds=EDIT_LOCK_WAIT_SECONDS):
        c.vector_store.delete([memory_id])
        c.history.record(
            project_id, [HistoryChange(str(uuid.uuid4()), memory_id, record.memory, None, "DELETE", actor_id="api")]
        )


def delete_all(c: Container, project_id: str, ids: ScopeFields) -> int:
    """Delete every memory matching the given ids; each deletion is recorded in history."""
    records = c.vector_store.list(scope_filter(project_id, ids), limit=10**9)
    for scope in {r.scope for r in records}:
        mine = [r for r in records if r.scope == scope]
        with c.locks.hold(scope, wait_seconds=EDIT_LOCK_WAIT_SECONDS):
            c.vector_store.delete([r.id for r in mine])
            c.history.record(
                project_id,
                [HistoryChange(str(uuid.uuid4()), r.id, r.memory, None, "DELETE", actor_id="api") for r in mine],
            )
    return len(records)


def history(c: Container, project_id: str, memory_id: str) -> list[HistoryEntry]:
    entries = c.history.for_memory(project_id, memory_id)
    if not entries and c.vector_store.get(memory_id, project_id) is None:
        raise NotFoundError(f"memory {memory_id} not found")
    return entries
