"""``ExportStore``: memory exports requested through the API, produced by a worker; and the history
rows an export carries (all of a project's, deleted memories' included) and their restore."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update

from engram.sql import tables
from engram.sql.engine import insert_ignore
from engram.sql.history import history_entry
from engram.sql.jobs import utcnow
from schemas.memories import HistoryEntry

# History rows per INSERT statement when restoring.
RESTORE_CHUNK_ROWS = 1000


class ExportStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, project_id: str, request: dict[str, Any]) -> str:
        export_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                tables.exports.insert().values(
                    id=export_id, project_id=project_id, status="PENDING", request=request, created_at=utcnow()
                )
            )
        return export_id

    def finish(self, export_id: str, *, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(tables.exports)
                .where(tables.exports.c.id == export_id)
                .values(status="FAILED" if error else "SUCCEEDED", result=result, error=error, finished_at=utcnow())
            )

    def get_by_id(self, export_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.exports).where(tables.exports.c.id == export_id)).mappings().first()
        return dict(row) if row else None

    def get(self, project_id: str, export_id: str | None = None) -> dict[str, Any] | None:
        """One export of the project, or its newest when no id is given."""
        e = tables.exports
        query = select(e).where(e.c.project_id == project_id)
        query = query.where(e.c.id == export_id) if export_id else query.order_by(e.c.created_at.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def project_history(self, project_id: str) -> list[HistoryEntry]:
        """Every history row of the project, of live and deleted memories alike, by memory then time."""
        h = tables.memory_history
        query = select(h).where(h.c.project_id == project_id).order_by(h.c.memory_id, h.c.created_at, h.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [history_entry(r) for r in rows]

    def restore_history(self, project_id: str, rows: Iterable[dict[str, Any]]) -> None:
        """History rows as exported (``HistoryEntry`` in JSON), every field and time kept; existing ids skipped."""
        values = []
        for r in rows:
            created_at = datetime.fromisoformat(r["created_at"])
            values.append(
                {
                    "id": r["id"],
                    "project_id": project_id,
                    "memory_id": r["memory_id"],
                    "old_memory": r.get("old_memory"),
                    "new_memory": r.get("new_memory"),
                    "event": r["event"],
                    "created_at": created_at,
                    "updated_at": datetime.fromisoformat(r["updated_at"]) if r.get("updated_at") else created_at,
                    "is_deleted": bool(r.get("is_deleted", r["event"] == "DELETE")),
                    "actor_id": r.get("actor_id"),
                    "role": r.get("role"),
                    "job_id": r.get("job_id"),
                }
            )
        statement = insert_ignore(self.engine, tables.memory_history)
        with self.engine.begin() as conn:
            for start in range(0, len(values), RESTORE_CHUNK_ROWS):
                conn.execute(statement, values[start : start + RESTORE_CHUNK_ROWS])
