"""The sweeper without a broker: which jobs count as stuck, what each needs next, one claim per job
however many sweepers run, and a failed send leaves the job for the next pass. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from config.container import Container
from config.settings import PipelineSettings
from engram import sweeper
from engram.sql import tables
from engram.sql.jobs import JobStore
from schemas.jobs import JobStatus, Stage

SETTINGS = PipelineSettings(stuck_after_seconds=60, retry_backoff_max_seconds=30, sweep_batch_size=100)
LONG_AGO = datetime.now(UTC) - timedelta(hours=1)


def new_job(store: JobStore, stage: Stage = Stage.QUEUED, *, status: JobStatus = JobStatus.PENDING,
            backdate: bool = True) -> str:
    job_id = str(uuid.uuid4())
    store.create(job_id, "proj", {"messages": [{"role": "user", "content": "I like tea."}], "user_id": "u"},
                 {"user_id": "u"})
    values: dict[str, Any] = {"stage": stage.value, "status": status.value}
    if backdate:
        values["updated_at"] = LONG_AGO
    with store.engine.begin() as conn:
        conn.execute(sa.update(tables.jobs).where(tables.jobs.c.id == job_id).values(**values))
    return job_id


def recorder() -> tuple[list[tuple[str, str]], sweeper.Resume]:
    sent: list[tuple[str, str]] = []
    lock = threading.Lock()

    def resume(job: sweeper.StuckJob) -> str:
        with lock:
            sent.append((job.id, job.step))
        return job.step

    return sent, resume


def test_each_stuck_job_gets_its_next_stage_once(sql_engine: sa.Engine) -> None:
    store = JobStore(sql_engine)
    by_stage = {stage: new_job(store, stage, status=JobStatus.RUNNING) for stage in
                (Stage.QUEUED, Stage.EXTRACTED, Stage.EMBEDDED, Stage.RECONCILED)}
    pending = new_job(store)  # accepted, its message lost before any worker saw it
    new_job(store, backdate=False)  # fresh: its message is on the way
    new_job(store, Stage.NOTIFIED, status=JobStatus.SUCCEEDED)
    new_job(store, Stage.EXTRACTED, status=JobStatus.FAILED)
    sent, resume = recorder()

    report = sweeper.sweep(sql_engine, SETTINGS, resume)

    assert sorted(sent) == sorted([(by_stage[Stage.QUEUED], "extract"), (by_stage[Stage.EXTRACTED], "embed"),
                                   (by_stage[Stage.EMBEDDED], "branches"), (by_stage[Stage.RECONCILED], "join"),
                                   (pending, "extract")])
    assert report.found == 5 and report.total == 5
    assert sweeper.sweep(sql_engine, SETTINGS, resume).found == 0  # claimed: not again before the deadline
    later = datetime.now(UTC) + timedelta(seconds=SETTINGS.stuck_after_seconds + 1)
    # a deadline later: the same five again (still stuck), and the fresh one, now stuck too
    assert sweeper.sweep(sql_engine, SETTINGS, resume, now=later).total == 6


def test_concurrent_sweepers_send_each_job_once(sql_engine: sa.Engine) -> None:
    store = JobStore(sql_engine)
    jobs = {new_job(store) for _ in range(30)}
    sent, resume = recorder()
    barrier = threading.Barrier(4)
    reports: list[sweeper.SweepReport] = []

    def run() -> None:
        barrier.wait()
        reports.append(sweeper.sweep(sql_engine, SETTINGS, resume))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(job_id for job_id, _ in sent) == sorted(jobs)
    assert sum(r.total for r in reports) == 30


def test_a_failed_send_leaves_the_job_for_the_next_pass(sql_engine: sa.Engine) -> None:
    store = JobStore(sql_engine)
    job_id = new_job(store)

    def broker_down(job: sweeper.StuckJob) -> str:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        sweeper.sweep(sql_engine, SETTINGS, broker_down)
    sent, resume = recorder()
    assert sweeper.sweep(sql_engine, SETTINGS, resume).total == 1 and sent == [(job_id, "extract")]


def test_a_job_that_moved_on_is_not_claimed(sql_engine: sa.Engine) -> None:
    store = JobStore(sql_engine)
    job_id = new_job(store)
    older_than = datetime.now(UTC) - timedelta(seconds=60)
    [stuck] = sweeper.find_stuck(sql_engine, older_than=older_than, limit=10)
    store.start_attempt(job_id)  # a worker got to it after all
    assert not sweeper.claim(sql_engine, stuck, older_than=older_than, now=datetime.now(UTC))


def test_the_deadline_must_outlast_a_retry_wait() -> None:
    with pytest.raises(ValidationError, match="stuck_after_seconds"):
        PipelineSettings(stuck_after_seconds=60, retry_backoff_max_seconds=300)


def test_resume_sends_what_the_previous_stage_would_have(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import sweeper as tasks
    from workers.celery_app import app

    sent: list[str] = []
    monkeypatch.setattr(app, "send_task", lambda name, *a, **kw: sent.append(name))
    store = container.jobs
    expected = {Stage.QUEUED: "engram.extract", Stage.EXTRACTED: "engram.embed",
                Stage.EMBEDDED: "engram.reconcile", Stage.RECONCILED: "engram.notify"}
    for stage, task in expected.items():
        sent.clear()
        job_id = new_job(store, stage, status=JobStatus.RUNNING)
        [stuck] = [j for j in sweeper.find_stuck(container.engine, older_than=datetime.now(UTC), limit=10)
                   if j.id == job_id]
        tasks.resume(container, stuck)
        assert sent == [task], stage
        with container.engine.begin() as conn:  # out of the way of the next stage's lookup
            conn.execute(sa.update(tables.jobs).where(tables.jobs.c.id == job_id).values(status="SUCCEEDED"))
    # notify is claimed once: a second sweep of the same reconciled job sends it again only if still open
    job_id = new_job(store, Stage.RECONCILED, status=JobStatus.RUNNING)
    stuck = sweeper.StuckJob(job_id, JobStatus.RUNNING, Stage.RECONCILED, LONG_AGO)
    sent.clear()
    tasks.resume(container, stuck)
    tasks.resume(container, stuck)
    assert sent == ["engram.notify", "engram.notify"]  # the claimant may have died before sending


def test_jobs_behind_a_backlog_are_left_alone(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk back-fill keeps jobs PENDING past the deadline without anything being lost: only the jobs
    older than the oldest message still queued (which FIFO order would have served first) are re-sent."""
    import json

    from workers import sweeper as tasks
    from workers.celery_app import app

    sent: list[str] = []
    monkeypatch.setattr(app, "send_task", lambda name, *a, **kw: sent.append(kw.get("args", a[0] if a else [""])[0]))
    store = container.jobs
    lost = new_job(store)  # older than anything queued
    queued = [new_job(store) for _ in range(3)]
    with container.engine.begin() as conn:  # the queued ones were sent after the lost one
        for i, job_id in enumerate(queued):
            conn.execute(sa.update(tables.jobs).where(tables.jobs.c.id == job_id)
                         .values(updated_at=LONG_AGO + timedelta(minutes=i + 1)))
    key = f"{container.settings.redis.key_prefix}celery:llm"
    for job_id in queued:  # LPUSH: consumers take from the right, the oldest first
        container.redis.lpush(key, json.dumps({"headers": {"task": "engram.extract", "argsrepr": f"['{job_id}']"}}))

    report = tasks.sweep_once(container)
    assert sent == [lost] and report.waiting == 3

    container.redis.delete(key)  # the backlog drained (or Redis lost it): nothing is waiting any more
    later = datetime.now(UTC) + timedelta(seconds=container.settings.pipeline.stuck_after_seconds + 1)
    sent.clear()
    report = sweeper.sweep(container.engine, container.settings.pipeline, lambda j: tasks.resume(container, j),
                           waiting=tasks.QueueHeads(container).waiting, now=later)
    assert sorted(sent) == sorted([lost, *queued])
