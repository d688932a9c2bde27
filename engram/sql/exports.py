"""``ExportStore``: memory exports requested through the API, produced by a worker."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine, select, update

from engram.sql import tables
from engram.sql.jobs import utcnow


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
