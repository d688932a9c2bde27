"""Task: the job's last stage: mark it SUCCEEDED (its per-memory events are already recorded).

A graph failure does not fail the job: its memories are stored; the job shows ``graph_error``. Nor
does a graph worker that never answers: the sweeper fails the branch at its deadline.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from config.container import Container
from engram import metrics
from engram.sql.branches import BranchStore
from engram.sql.jobs import Job
from schemas.jobs import JobStatus, Stage
from workers import runtime, webhooks
from workers.celery_app import app
from workers.stage import run_stage

log = logging.getLogger(__name__)


def notify_work(c: Container, job: Job) -> dict[str, Any]:
    # Webhooks (issue #5): job_succeeded is written before the job ends and sent after it has.
    outcome = BranchStore(c.engine).outcome(job.id)  # with graph memory, its relations go in the body too
    graph = outcome.add_fields() if outcome else None
    deliveries = webhooks.job_event_outbox(c, job.id, JobStatus.SUCCEEDED, graph=graph)
    c.jobs.finish(job.id, JobStatus.SUCCEEDED)
    metrics.JOBS_FINISHED.labels("SUCCEEDED").inc()
    webhooks.enqueue(deliveries)
    return {}


NOTIFY_TASK = "engram.notify"


def notify_body(task: Task, job_id: str) -> None:
    branch = BranchStore(runtime.container().engine).get(job_id)
    if branch is not None and branch.open:
        # Early (a duplicate): the graph branch's end sends notify again.
        log.info("job %s: notify before its graph branch ended; dropped", job_id)
        return
    run_stage(task, job_id, Stage.NOTIFIED, notify_work, next_task=None)


@app.task(bind=True, name=NOTIFY_TASK, max_retries=None)  # our attempt cap governs retries
def notify(self: Task, job_id: str) -> None:
    notify_body(self, job_id)
