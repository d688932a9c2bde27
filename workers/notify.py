"""Task: the job's last stage: mark it SUCCEEDED (its per-memory events are already recorded).

A graph failure does not fail the job: its memories are stored; the job shows ``graph_error``. Nor
does a graph worker that never answers: the sweeper fails the branch at its deadline.
"""

from __future__ import annotations

import logging

from celery import Task

from config.container import Container
from engram import metrics
from engram.sql.branches import BranchStore
from engram.sql.jobs import Job
from schemas.jobs import JobStatus, Stage
from workers import runtime, webhooks
from workers.celery_app import app
from workers.stage import given_or_read, run_stage

log = logging.getLogger(__name__)


def notify_work(c: Container, job: Job) -> None:
    # Webhooks (issue #5): job_succeeded is written before the job ends and sent after it has.
    # With graph memory, its relations go in the body too (a job read before its branch opened has it now).
    outcome = BranchStore(c.engine).outcome(job.id) if job.graph_state is not None else None
    graph = outcome.add_fields() if outcome else None
    deliveries = webhooks.job_event_outbox(c, job, JobStatus.SUCCEEDED, graph=graph)
    c.jobs.finish(job.id, JobStatus.SUCCEEDED, stage=Stage.NOTIFIED)  # the job's end is the stage's done marker
    metrics.JOBS_FINISHED.labels("SUCCEEDED").inc()
    webhooks.enqueue(deliveries)


NOTIFY_TASK = "engram.notify"


def notify_body(task: Task, job_id: str, job: Job | None = None) -> None:
    c = runtime.container()
    job = given_or_read(c, job_id, job)
    if job is None:
        return
    # The branch opens before reconcile is sent (``fork_branches``), so a job read since shows whether it has one.
    branch = BranchStore(c.engine).get(job_id) if job.graph_state is not None else None
    if branch is not None and branch.open:
        # Early (a duplicate): the graph branch's end sends notify again.
        log.info("job %s: notify before its graph branch ended; dropped", job_id)
        return
    run_stage(task, job_id, Stage.NOTIFIED, notify_work, next_task=None, job=job)


@app.task(bind=True, name=NOTIFY_TASK, max_retries=None)  # our attempt cap governs retries
def notify(self: Task, job_id: str) -> None:
    notify_body(self, job_id)
