"""``FeedbackStore``: what users said about a memory (Mem0's ``POST /v1/feedback/``), kept for review."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from engram.sql import tables
from engram.sql.engine import insert_ignore
from engram.sql.jobs import _aware, utcnow

# Ids per IN (...) clause: well under SQLite's and PostgreSQL's bound-parameter limits.
IDS_PER_QUERY = 500


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

    def for_project(self, project_id: str, memory_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every feedback row of the project (or of these memories), oldest first, as exports carry them."""
        f = tables.feedback
        base = select(f.c.id, f.c.memory_id, f.c.feedback, f.c.feedback_reason, f.c.created_at).where(
            f.c.project_id == project_id
        )
        if memory_ids is None:
            queries = [base]
        else:
            ids = list(dict.fromkeys(memory_ids))
            chunks = [ids[i : i + IDS_PER_QUERY] for i in range(0, len(ids), IDS_PER_QUERY)]
            queries = [base.where(f.c.memory_id.in_(chunk)) for chunk in chunks]
        rows: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for query in queries:
                rows += [dict(r) for r in conn.execute(query).mappings()]
        for row in rows:
            row["created_at"] = _aware(row["created_at"]).isoformat()  # type: ignore[union-attr]
        return sorted(rows, key=lambda r: (r["created_at"], r["id"]))

    def restore(self, project_id: str, rows: Iterable[dict[str, Any]]) -> None:
        """Feedback rows as exported, ids and times kept; rows already present are skipped (re-import is safe)."""
        values = [
            {
                "id": r["id"],
                "project_id": project_id,
                "memory_id": r["memory_id"],
                "feedback": r.get("feedback"),
                "feedback_reason": r.get("feedback_reason"),
                "created_at": datetime.fromisoformat(r["created_at"]),
            }
            for r in rows
        ]
        if values:
            with self.engine.begin() as conn:
                conn.execute(insert_ignore(self.engine, tables.feedback), values)
