"""``HistoryStore``: every change to every memory (Mem0's history rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from engram.sql import tables
from engram.sql.engine import insert_ignore
from engram.sql.jobs import _aware, utcnow
from engram.sql.retry import retrying
from schemas.memories import HistoryEntry


@dataclass(frozen=True, slots=True)
class HistoryChange:
    id: str
    memory_id: str
    old_memory: str | None
    new_memory: str | None
    event: str
    actor_id: str | None = None
    role: str | None = None
    job_id: str | None = None


class HistoryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self, project_id: str, changes: list[HistoryChange], conn: Any | None = None, at: datetime | None = None
    ) -> None:
        """Append history rows; rows whose id exists are skipped (a re-applied plan adds nothing)."""
        if not changes:
            return
        now = at or utcnow()
        rows = [
            {
                "id": c.id,
                "project_id": project_id,
                "memory_id": c.memory_id,
                "old_memory": c.old_memory,
                "new_memory": c.new_memory,
                "event": c.event,
                "created_at": now,
                "updated_at": now,
                "is_deleted": c.event == "DELETE",
                "actor_id": c.actor_id,
                "role": c.role,
                "job_id": c.job_id,
            }
            for c in changes
        ]
        statement = insert_ignore(self.engine, tables.memory_history)
        if conn is not None:
            conn.execute(statement, rows)  # the caller's transaction: the caller decides about retries
            return
        self._insert_own(statement, rows)

    @retrying
    def _insert_own(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        # Rows have deterministic ids and existing ids are skipped: running this twice inserts them once.
        with self.engine.begin() as own:
            own.execute(statement, rows)

    @retrying
    def for_memory(self, project_id: str, memory_id: str) -> list[HistoryEntry]:
        h = tables.memory_history
        query = (
            select(h).where(h.c.project_id == project_id, h.c.memory_id == memory_id).order_by(h.c.created_at, h.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [history_entry(r) for r in rows]


def history_entry(r: Any) -> HistoryEntry:
    """A ``memory_history`` row (a mapping) as Mem0's history entry."""
    return HistoryEntry(
        id=r["id"],
        memory_id=r["memory_id"],
        old_memory=r["old_memory"],
        new_memory=r["new_memory"],
        event=r["event"],
        created_at=_aware(r["created_at"]),  # type: ignore[arg-type]
        updated_at=_aware(r["updated_at"]),
        is_deleted=r["is_deleted"],
        actor_id=r["actor_id"],
        role=r["role"],
        job_id=r["job_id"],
    )
