"""Task: the job's last stage: mark it SUCCEEDED (its per-memory events are already recorded)."""

from __future__ import annotations

from typing import Any

from celery import Task

from config.container import Container
from engram.sql.jobs import Job
from schemas.jobs import JobStatus, Stage
from workers.celery_app import app
from workers.stage import run_stage


def notify_work(c: Container, job: Job) -> dict[str, Any]:
    c.jobs.finish(job.id, JobStatus.SUCCEEDED)
    return {}


@app.task(bind=True, name="engram.notify", max_retries=None)  # our attempt cap governs retries
def notify(self: Task, job_id: str) -> None:
    run_stage(self, job_id, Stage.NOTIFIED, notify_work, next_task=None)
