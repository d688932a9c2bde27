"""Task: extract facts from the job's conversation."""

from __future__ import annotations

from typing import Any

from celery import Task

from config.container import Container
from engram.sql.jobs import Job
from engram.stages.extract import extract_facts, extraction_prompt
from schemas.jobs import Stage
from schemas.memories import MemoryCreate
from workers.celery_app import app
from workers.embed import EMBED_TASK, embed_body
from workers.stage import run_stage, send_or_run


def extract_work(c: Container, job: Job) -> dict[str, Any]:
    request = MemoryCreate.model_validate(job.request)
    project = c.tenancy.project(job.project_id) or {}
    prompt = extraction_prompt(
        project.get("custom_fact_extraction_prompt") or c.settings.pipeline.custom_fact_extraction_prompt,
        request.custom_instructions or project.get("custom_instructions"),
    )
    facts = extract_facts(request.messages, c.llm, infer=request.infer, custom_prompt=prompt)
    return {"facts": facts}


def embed_next(task: Task | None, c: Container, job: Job, redelivered: bool) -> None:
    send_or_run(task, c, EMBED_TASK, embed_body, job)  # in this task by default: the facts are small


@app.task(bind=True, name="engram.extract", max_retries=None)  # our attempt cap governs retries
def extract(self: Task, job_id: str) -> None:
    run_stage(self, job_id, Stage.EXTRACTED, extract_work, next_task=embed_next)
