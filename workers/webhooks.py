"""Tasks of the ``webhooks`` queue, and the helpers the pipeline's stages call to use the outbox.

A delivery task carries only ids (never a secret or a body), so nothing sensitive reaches the
broker or Flower. A slow or dead receiver occupies only webhook workers, never the pipeline's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from config.container import Container
from engram.ingest import BROKER_ERRORS
from engram.sql.jobs import Job, utcnow
from engram.webhooks import DELIVER_TASK, outbox
from engram.webhooks.deliver import deliver
from engram.webhooks.outbox import OutboxEvent, Queued
from engram.webhooks.payload import JOB_EVENT_TYPES, job_body, scope_of
from schemas.jobs import JobStatus, MemoryEvent
from workers import runtime
from workers.celery_app import app

log = logging.getLogger(__name__)
SWEEP_TASK = "engram.webhooks.sweep"


def enqueue(queued: Iterable[Queued]) -> None:
    """Send deliveries to the webhooks queue (after the transaction that wrote them committed).

    A broker error is logged, not raised: the rows are already durable and PENDING, the sweeper sends
    them, and the caller (often a job that has just ended) must not fail for it.
    """
    pending = list(queued)
    try:
        for delivery_id, token in pending:
            app.send_task(DELIVER_TASK, args=[delivery_id], kwargs={"expected_attempts": token})
    except BROKER_ERRORS as exc:
        log.warning("could not enqueue %d webhook deliveries (%s); the sweeper will send them", len(pending), exc)


def memory_events_outbox(conn: object, job: Job, events: list[MemoryEvent]) -> list[Queued]:
    """Outbox rows for a job's memory events, in the caller's transaction (reconcile's)."""
    now = utcnow()
    items = outbox.memory_events(
        events, job_id=job.id, project_id=job.project_id, scope=scope_of(job.request), at=now,
        job_created_at=job.created_at,
    )
    return outbox.write(conn, job.project_id, job.id, items, now)


def job_event_outbox(
    c: Container, job: Job | str, status: JobStatus, error: str | None = None, graph: dict[str, Any] | None = None
) -> list[Queued]:
    """The job_succeeded / job_failed row, written before the job is marked terminal (a crash in between
    re-runs the stage, which writes nothing new); the caller enqueues it once the job has ended. ``job``: the
    job, or its id to read it by. ``graph``: the job's graph outcome (relations, graph_status), for a job
    with graph memory."""
    found = c.jobs.get(job) if isinstance(job, str) else job
    if found is None:
        return []
    job, now = found, utcnow()
    body = job_body(
        status.value, job_id=job.id, project_id=job.project_id, scope=scope_of(job.request), at=now, error=error,
        results=c.jobs.events(job.id), created_at=job.created_at, started_at=job.started_at, graph=graph,
    )
    event_type = JOB_EVENT_TYPES[status.value]
    with c.engine.begin() as conn:
        return outbox.write(conn, job.project_id, job.id, [OutboxEvent(event_type, event_type, body)], now)


def max_countdown_seconds(c: Container) -> float:
    # An ETA past Redis's visibility timeout gets the message redelivered while it waits; longer
    # waits are taken in hops (the task finds the delivery not yet due and schedules itself again).
    return c.settings.pipeline.visibility_timeout_seconds / 2


# Only a SQL outage is retried here (the delivery's own retries are its schedule, below); a message
# lost after that is found by the sweeper.
@app.task(name=DELIVER_TASK, autoretry_for=(SQLAlchemyError,), retry_backoff=True, retry_backoff_max=300,
          max_retries=10)
def deliver_task(delivery_id: str, expected_attempts: int | None = None) -> None:
    """Make one attempt of a delivery (if due and not taken), then schedule the next if it is to be retried."""
    c = runtime.container()
    step = deliver(c.webhooks, c.settings.webhooks, delivery_id, expected_attempts)
    if step.wait_seconds is not None:
        countdown = min(max(step.wait_seconds, 0.0), max_countdown_seconds(c))
        deliver_task.apply_async(
            args=[delivery_id], kwargs={"expected_attempts": step.expected_attempts}, countdown=countdown
        )


def sweep(c: Container) -> int:
    """Re-send PENDING deliveries overdue by more than the grace period: their message was lost (a crash
    between commit and enqueue, a purged queue). Duplicates are harmless: the claim token drops them."""
    due = c.webhooks.overdue(datetime.now(UTC), c.settings.webhooks.sweep_grace_seconds)
    enqueue(due)
    if due:
        log.info("webhook sweep re-sent %d overdue deliveries", len(due))
    return len(due)


@app.task(name=SWEEP_TASK)
def sweep_task() -> int:
    """The sweep, every minute where ``celery beat`` runs (``engram webhooks sweep`` runs it by hand)."""
    return sweep(runtime.container())
