"""Task: embed all facts of the job in one batched call."""

from __future__ import annotations

from typing import Any

from celery import Task

from config.container import Container
from engram.sql.jobs import Job
from engram.stages.embed import embed_facts
from schemas.jobs import Stage
from workers.branches import fork_branches
from workers.celery_app import app
from workers.stage import run_stage


def embed_work(c: Container, job: Job) -> dict[str, Any]:
    return {"embeddings": embed_facts(job.facts or [], c.embedder)}


EMBED_TASK = "engram.embed"


def embed_body(task: Task, job_id: str, job: Job | None = None) -> None:
    # Then reconcile, and beside it the graph stage when graph memory is on.
    run_stage(task, job_id, Stage.EMBEDDED, embed_work, next_task=fork_branches, job=job)


@app.task(bind=True, name=EMBED_TASK, max_retries=None)  # our attempt cap governs retries
def embed(self: Task, job_id: str) -> None:
    embed_body(self, job_id)
