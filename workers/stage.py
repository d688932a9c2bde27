"""What every stage task shares: skip done work, count attempts, retry or fail, hand on.

Delivery is at-least-once (acks_late). A redelivered message for a stage already done only hands
the job on again; the next stage then sees its own done marker. Attempts are counted in SQL per
stage and capped, so a message that keeps killing workers ends the job FAILED instead of looping.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from celery import Task

from config.container import Container
from engram import metrics
from engram.errors import PermanentError, RateLimited, ScopeBusy, TransientError
from engram.scope import Scope
from engram.sql.jobs import Job
from schemas.jobs import JobStatus, Stage
from workers import runtime, webhooks
from workers.celery_app import app

log = logging.getLogger(__name__)

# A stage's work: its outputs for ``complete_stage``, or None when the work recorded its completion itself.
StageWork = Callable[[Container, Job], dict[str, Any] | None]
# Hands a job on after its stage: (task, container, job, redelivered). ``task`` ran the stage (None outside
# a task: the sweeper); ``job`` is as that stage left it; ``redelivered`` is True when the stage was already
# done, i.e. an earlier delivery may have died between completing it and handing it on.
HandOn = Callable[[Task | None, Container, Job, bool], None]
# Runs a stage's task body for a job inside the given task (see ``send_or_run``), from the job as the stage
# before left it (None: the body reads it).
StageBody = Callable[[Task, str, Job | None], None]


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter in [50%, 100%] of the step."""
    step = min(cap, base * 2 ** max(0, attempt - 1))
    return step * random.uniform(0.5, 1.0)


def hand_on(
    next_task: str | HandOn | None, task: Task, c: Container, job: Job, *, redelivered: bool = False
) -> None:
    if next_task is None:
        return
    if isinstance(next_task, str):
        app.send_task(next_task, args=[job.id])
        return
    next_task(task, c, job, redelivered)


def send_or_run(task: Task | None, c: Container, task_name: str, body: StageBody, job: Job) -> None:
    """Hand the job to the stage task ``task_name``, or run that stage's ``body`` here, in ``task``.

    Here unless ``pipeline.separate_stage_tasks``: embed and notify are short, and a broker hop costs more
    CPU than either (publish, receive, ack, task events, the job re-read; bench/). Nothing of the stage's
    guarantees changes: it keeps its done marker, attempt count and metrics. A retry it asks for retries
    ``task``, whose redelivery finds its own stage done and hands on, i.e. runs this one again. It starts
    from ``job`` as the stage before left it, without reading it again.
    """
    if task is None or c.settings.pipeline.separate_stage_tasks:
        app.send_task(task_name, args=[job.id])
    else:
        body(task, job.id, job)


def _observe(stage: Stage, outcome: str, started: float) -> None:
    metrics.STAGE_SECONDS.labels(stage.value, outcome).observe(time.perf_counter() - started)


def fail_job(c: Container, job_id: str, reason: str) -> None:
    log.warning("job %s failed: %s", job_id, reason)
    metrics.JOBS_FINISHED.labels("FAILED").inc()
    # Webhooks (issue #5): job_failed is written before the job ends and sent after it has.
    deliveries = webhooks.job_event_outbox(c, job_id, JobStatus.FAILED, reason[:2000])
    c.jobs.finish(job_id, JobStatus.FAILED, reason[:2000])
    webhooks.enqueue(deliveries)


def scope_of(job: Job) -> Scope:
    r = job.request
    return Scope.of(job.project_id, r.get("user_id"), r.get("agent_id"), r.get("run_id"))


def given_or_read(c: Container, job_id: str, job: Job | None) -> Job | None:
    """``job`` as a stage before left it in this task, else as the job's row has it (None: no such job)."""
    if job is None:
        job = c.jobs.get(job_id)
        if job is None:
            log.error("job %s not found; message dropped", job_id)
    return job


def run_stage(
    task: Task,
    job_id: str,
    stage: Stage,
    work: StageWork,
    *,
    next_task: str | HandOn | None,
    scope_locked: bool = False,
    job: Job | None = None,
) -> None:
    """Run ``work`` for the job once (if its stage is not done), record its outputs, hand on.

    ``job``: the job as the stage before left it in this same task (``send_or_run``), instead of reading it.
    """
    c = runtime.container()
    job = given_or_read(c, job_id, job)
    if job is None:
        return
    if job.status.terminal:
        return
    if job.done(stage):
        hand_on(next_task, task, c, job, redelivered=True)
        return
    if not job.done(stage.previous):
        # Delivered before its turn (a duplicate of a later stage): the pipeline hands it on in order.
        log.info("job %s: %s arrived before %s was done; dropped", job_id, stage.value, stage.previous.value)
        return
    guard: AbstractContextManager[Any] = (
        c.locks.hold(scope_of(job), wait_seconds=c.settings.pipeline.lock_wait_seconds)
        if scope_locked
        else nullcontext()
    )
    try:
        with guard:
            completed = _attempt(task, c, job, stage, work)
    except ScopeBusy as busy:
        # Doubling per retry, capped: 50 jobs of one user at once used to spin ~45 retries each (RELIABILITY.md).
        p = c.settings.pipeline
        wait = min(p.lock_retry_max_seconds, p.lock_retry_seconds * 2 ** min(task.request.retries or 0, 16))
        raise task.retry(countdown=wait * random.uniform(0.5, 1.0)) from busy
    if completed is not None:
        hand_on(next_task, task, c, completed)


def _attempt(task: Task, c: Container, job: Job, stage: Stage, work: StageWork) -> Job | None:
    """The job as the completed stage left it; None when the job was failed or a duplicate delivery did the
    stage first; raises Retry to try again."""
    p = c.settings.pipeline
    # Counted only while the stage is still to do: under the scope lock this is also the check that no
    # duplicate delivery did it meanwhile, and it brings the plan an earlier attempt of reconcile saved.
    counted = c.jobs.start_stage_attempt(job.id, stage)
    if counted is None:
        return None
    attempt = counted.number
    job = dataclasses.replace(job, plan=counted.plan)
    if attempt > p.max_attempts_per_stage:
        fail_job(c, job.id, f"{stage.value}: gave up after {p.max_attempts_per_stage} attempts")
        return None
    retry_after: float | None = None
    started = time.perf_counter()
    try:
        outputs = work(c, job)
    except PermanentError as exc:
        _observe(stage, "failed", started)
        fail_job(c, job.id, f"{stage.value}: {exc}")
        return None
    except RateLimited as exc:  # issue #8: waiting for the shared LLM rate limit is no failed attempt
        c.jobs.refund_attempt(job.id)
        wait = exc.retry_after_seconds or p.retry_backoff_seconds
        # The attempt starts over after the wait (a half-finished repair too); the fault tests read this line.
        log.info("job %s: %s deferred %.1fs by the shared LLM rate limit", job.id, stage.value, wait)
        raise task.retry(countdown=wait, exc=exc) from exc
    except TransientError as exc:
        error: Exception = exc
        retry_after = exc.retry_after_seconds
    except Exception as exc:  # unknown failure: retried within the cap, then recorded on the job
        log.exception("stage %s of job %s raised", stage.value, job.id)
        error = exc
    else:
        _observe(stage, "ok", started)
        if outputs is None:  # the work recorded its completion itself (notify ends the job with it)
            return dataclasses.replace(job, stage=stage, attempts=0)
        if not c.jobs.complete_stage(job.id, stage, **outputs):
            return None
        return dataclasses.replace(job, stage=stage, attempts=0, **outputs)
    reason = f"{stage.value}: {type(error).__name__}: {error!s:.500}"
    if attempt >= p.max_attempts_per_stage:
        _observe(stage, "failed", started)
        fail_job(c, job.id, f"{reason} (after {attempt} attempts)")
        return None
    _observe(stage, "retry", started)
    metrics.STAGE_RETRIES.labels(stage.value, type(error).__name__).inc()
    countdown = (
        retry_after
        if retry_after is not None
        else backoff_seconds(attempt, p.retry_backoff_seconds, p.retry_backoff_max_seconds)
    )
    log.info("job %s: %s; attempt %d, retry in %.1fs", job.id, reason, attempt, countdown)
    raise task.retry(countdown=countdown, exc=error)
