"""``BatchStore``: one row per batch ingest; its jobs carry the batch id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from engram.sql import tables
from engram.sql.jobs import utcnow


class BatchStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, batch_id: str, project_id: str, total: int, rejected: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                tables.batches.insert().values(
                    id=batch_id, project_id=project_id, total=total, rejected=rejected, created_at=utcnow()
                )
            )

    def get(self, batch_id: str, project_id: str) -> dict[str, Any] | None:
        b = tables.batches
        with self.engine.connect() as conn:
            row = conn.execute(select(b).where(b.c.id == batch_id, b.c.project_id == project_id)).mappings().first()
        return dict(row) if row else None
