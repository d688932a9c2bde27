"""The outbox: delivery rows written in the caller's transaction, beside the events they announce.

If the transaction commits, the deliveries exist; if it rolls back, neither does. Ids are
deterministic (job, webhook, event), so a redelivered stage that records its events again inserts
no second delivery. The caller enqueues what this returns once its transaction has committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from engram.ids import ENGRAM_NAMESPACE
from engram.sql import tables
from engram.sql.engine import insert_ignore
from engram.webhooks.payload import MEMORY_EVENT_TYPES, memory_body
from engram.webhooks.store import PENDING
from schemas.jobs import MemoryEvent

# (delivery id, claim token): what the webhooks queue needs to send it.
Queued = tuple[str, int]
# Built once: asked twice by every job (engram/sql/jobs.py says why).
_ACTIVE_HOOKS = select(tables.webhooks.c.id, tables.webhooks.c.event_types).where(
    tables.webhooks.c.project_id == bindparam("project_id"), tables.webhooks.c.is_active.is_(True)
)


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    key: str  # unique within the job: "memory:<seq>" or the job event type
    event_type: str
    body: str


def delivery_id_for(job_id: str, webhook_id: str, key: str) -> str:
    return str(uuid.uuid5(ENGRAM_NAMESPACE, f"{job_id}:webhook:{webhook_id}:{key}"))


def memory_events(
    events: Sequence[MemoryEvent], *, job_id: str, project_id: str, scope: dict[str, str], at: datetime,
    job_created_at: datetime | None = None,
) -> list[OutboxEvent]:
    """One outbox event per memory that changed (NONE decisions announce nothing)."""
    return [
        OutboxEvent(
            f"memory:{seq}",
            MEMORY_EVENT_TYPES[e.event],
            memory_body(e, job_id=job_id, project_id=project_id, scope=scope, at=at, job_created_at=job_created_at),
        )
        for seq, e in enumerate(events)
        if e.event in MEMORY_EVENT_TYPES
    ]


def write(conn: Any, project_id: str, job_id: str, events: Sequence[OutboxEvent], now: datetime) -> list[Queued]:
    """Insert one delivery per (active webhook of the project subscribed to the event type × event),
    inside ``conn``'s transaction. Returns the deliveries still waiting for their first send."""
    if not events:
        return []
    hooks = conn.execute(_ACTIVE_HOOKS, {"project_id": project_id}).all()
    rows = [
        {
            "id": delivery_id_for(job_id, hook.id, event.key), "webhook_id": hook.id, "project_id": project_id,
            "job_id": job_id, "event_type": event.event_type, "body": event.body, "status": PENDING,
            "attempts": 0, "round_start": 0, "next_attempt_at": now, "created_at": now, "updated_at": now,
        }
        for event in events
        for hook in hooks
        if event.event_type in (hook.event_types or [])
    ]
    if not rows:
        return []
    conn.execute(insert_ignore(conn.engine, tables.webhook_deliveries), rows)
    d = tables.webhook_deliveries
    waiting = conn.execute(
        select(d.c.id, d.c.attempts).where(
            d.c.id.in_([r["id"] for r in rows]), d.c.status == PENDING, d.c.attempts == d.c.round_start
        )
    )
    return [(r.id, r.attempts) for r in waiting]
