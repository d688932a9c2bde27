"""``FeedbackStore``: what users said about a memory (Mem0's ``POST /v1/feedback/``), kept for review."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, select

from engram.sql import tables
from engram.sql.jobs import utcnow


class FeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, project_id: str, memory_id: str, feedback: str | None, reason: str | None) -> str:
        feedback_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                tables.feedback.insert().values(
                    id=feedback_id,
                    project_id=project_id,
                    memory_id=memory_id,
                    feedback=feedback,
                    feedback_reason=reason,
                    created_at=utcnow(),
                )
            )
        return feedback_id

    def for_memory(self, project_id: str, memory_id: str) -> list[dict[str, object]]:
        f = tables.feedback
        query = select(f).where(f.c.project_id == project_id, f.c.memory_id == memory_id).order_by(f.c.created_at)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]
