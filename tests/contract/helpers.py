"""Records for the contract tests: 4-d vectors, readable by eye."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engram.ids import content_hash
from engram.ports import MemoryRecord
from engram.scope import Scope

DIM = 4
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(
    memory_id: str,
    project_id: str,
    vector: list[float],
    text: str | None = None,
    *,
    user_id: str = "ana",
    agent_id: str = "",
    run_id: str = "",
    minutes: float = 0,
    **fields: Any,
) -> MemoryRecord:
    text = text or f"memory {memory_id}"
    at = fields.pop("created_at", T0 + timedelta(minutes=minutes))
    return MemoryRecord(
        id=memory_id,
        memory=text,
        hash=content_hash(text),
        scope=Scope(project_id, user_id, agent_id, run_id),
        vector=[float(v) for v in vector],
        created_at=at,
        updated_at=fields.pop("updated_at", at),
        **fields,
    )


def ids(records: list[MemoryRecord]) -> list[str]:
    return [r.id for r in records]
