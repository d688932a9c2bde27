"""The sweeper: jobs whose queue message was lost are sent on again, from the SQL truth.

A message can vanish: Redis restarted without persistence, a queue was purged, a crash fell between
a commit and a send. The ``jobs`` row still says where the job is (``stage`` is the last stage
done), so a job PENDING or RUNNING and untouched for ``pipeline.stuck_after_seconds`` gets the task
of its next stage sent again. Sending one too many is harmless: every stage is idempotent and drops
deliveries that are early or already done.

Several sweepers may run at once: each job is claimed with one conditional UPDATE (``updated_at``
still older than the deadline), which only one of them wins; the claim also moves ``updated_at`` so
the job is not swept again before another full deadline has passed.

The sweeper also enforces the graph branch's deadline (``expire_graph_branches``). It is the one
component that runs whatever else is down, looks at every open job, and already takes its
decisions from SQL with one conditional UPDATE per job; a countdown task sent at the fork would be
lost with its worker or with Redis, and the graph worker, the one that is missing, cannot do it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, update

from config.settings import PipelineSettings
from engram.sql import tables
from engram.sql.branches import BranchStore, deadline_reason
from engram.sql.jobs import _aware
from engram.sql.retry import retrying
from schemas.jobs import JobStatus, Stage

log = logging.getLogger(__name__)
OPEN_STATUSES = (JobStatus.PENDING.value, JobStatus.RUNNING.value)

# What a job needs next, by the last stage it completed (``jobs.stage``).
NEXT_STEP: dict[Stage, str] = {
    Stage.QUEUED: "extract",
    Stage.EXTRACTED: "embed",
    Stage.EMBEDDED: "branches",  # reconcile, and the graph stage beside it when graph memory is on
    Stage.RECONCILED: "join",  # the graph stage if its branch is still open, else notify
    Stage.NOTIFIED: "none",  # notify marks the job terminal before its marker: nothing left to send
}


@dataclass(frozen=True, slots=True)
class StuckJob:
    id: str
    status: JobStatus
    stage: Stage
    updated_at: datetime

    @property
    def step(self) -> str:
        return NEXT_STEP[self.stage]


# Hands on a job whose graph branch the deadline ended (its notify, if reconcile is done), by id.
Expired = Callable[[str], None]
# Sends what a stuck job needs next; returns what it sent (for the report), e.g. "extract".
Resume = Callable[[StuckJob], str]
# Whether the job's message may still be waiting in its queue behind a backlog (then it is not lost).
Waiting = Callable[[StuckJob], bool]


@dataclass
class SweepReport:
    found: int = 0
    resent: Counter[str] = field(default_factory=Counter)
    taken_by_another: int = 0
    waiting: int = 0  # behind a backlog in their queue: left alone
    graph_expired: int = 0  # graph branches failed by their deadline (their jobs handed on to notify)

    @property
    def total(self) -> int:
        return sum(self.resent.values())


@retrying
def find_stuck(engine: Engine, *, older_than: datetime, limit: int) -> list[StuckJob]:
    """Open jobs not touched since ``older_than``, oldest first (uses ``ix_jobs_status_updated``)."""
    j = tables.jobs
    query = (
        select(j.c.id, j.c.status, j.c.stage, j.c.updated_at)
        .where(j.c.status.in_(OPEN_STATUSES), j.c.updated_at < older_than)
        .order_by(j.c.updated_at)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [StuckJob(r.id, JobStatus(r.status), Stage(r.stage), _aware(r.updated_at)) for r in rows]  # type: ignore[arg-type]


@retrying
def claim(engine: Engine, job: StuckJob, *, older_than: datetime, now: datetime) -> bool:
    """True for exactly one sweeper: the job is still open, at the same stage, and still untouched."""
    j = tables.jobs
    with engine.begin() as conn:
        result = conn.execute(
            update(j)
            .where(
                j.c.id == job.id,
                j.c.status.in_(OPEN_STATUSES),
                j.c.stage == job.stage.value,
                j.c.updated_at < older_than,
            )
            .values(updated_at=now)
        )
    return bool(result.rowcount)


@retrying
def unclaim(engine: Engine, job: StuckJob, *, claimed_at: datetime) -> None:
    """Give a claim back when the send failed (broker down), so the next sweep tries again at once."""
    j = tables.jobs
    with engine.begin() as conn:
        conn.execute(
            update(j).where(j.c.id == job.id, j.c.updated_at == claimed_at).values(updated_at=job.updated_at)
        )


def sweep(
    engine: Engine,
    settings: PipelineSettings,
    resume: Resume,
    *,
    waiting: Waiting | None = None,
    now: datetime | None = None,
) -> SweepReport:
    """One pass: claim and re-send up to ``sweep_batch_size`` stuck jobs (not those still ``waiting``).

    A failed send gives its claim back and ends the pass with the error (the broker is likely down;
    the jobs are left as they were for the next pass).
    """
    now = now or datetime.now(UTC)
    older_than = now - timedelta(seconds=settings.stuck_after_seconds)
    report = SweepReport()
    stuck = find_stuck(engine, older_than=older_than, limit=settings.sweep_batch_size)
    report.found = len(stuck)
    for job in stuck:
        if job.step == "none":
            log.warning("job %s is %s at stage %s with nothing left to send", job.id, job.status, job.stage)
            continue
        if waiting is not None and waiting(job):
            report.waiting += 1
            continue
        if not claim(engine, job, older_than=older_than, now=now):
            report.taken_by_another += 1  # progressed meanwhile, or another sweeper has it
            continue
        try:
            sent = resume(job)
        except BaseException:
            unclaim(engine, job, claimed_at=now)
            raise
        report.resent[sent] += 1
        log.info("job %s: %s at stage %s, untouched since %s; re-sent %s",
                 job.id, job.status, job.stage, job.updated_at.isoformat(timespec="seconds"), sent)
    if report.found:
        log.info("sweep: %d stuck jobs found, %d re-sent %s, %d still queued behind a backlog, "
                 "%d taken by another sweeper or progressed",
                 report.found, report.total, dict(report.resent), report.waiting, report.taken_by_another)
    return report


def expire_graph_branches(
    engine: Engine,
    deadline_seconds: float,
    on_expired: Expired,
    *,
    limit: int,
    now: datetime | None = None,
) -> int:
    """Fail the graph branches of open jobs still PENDING ``deadline_seconds`` after they opened; hand
    each job on. Returns how many were failed.

    Notify waits for both branches, so without this a graph worker that is down (or a graph message
    that was lost) keeps jobs RUNNING for ever, and async adds, webhooks and the sweeper's re-sends of
    the graph message with them. The memories are stored by then: the job SUCCEEDS, showing
    ``graph_status`` FAILED and why. A graph task that arrives later still applies its write (see
    ``BranchStore.finish``). A failed ``on_expired`` (broker down) ends the pass with its error; the
    job's notify is then sent by the stuck-job sweep, which finds the branch ended.
    """
    now = now or datetime.now(UTC)
    opened_before = now - timedelta(seconds=deadline_seconds)
    reason = deadline_reason(deadline_seconds)
    branches = BranchStore(engine)
    expired = 0
    for job_id in branches.overdue(opened_before, limit):
        if not branches.expire(job_id, opened_before, reason):
            continue  # the graph stage ended meanwhile, or another sweeper took it
        expired += 1
        log.warning("job %s: graph branch FAILED: %s; the job ends without it", job_id, reason)
        on_expired(job_id)
    return expired
