"""Task: decide ADD/UPDATE/DELETE/NONE and apply it, under the scope lock."""

from __future__ import annotations

from typing import Any

from celery import Task

from config.container import Container
from engram.sql.jobs import Job
from engram.stages.extract import raw_memories
from engram.stages.reconcile import WriteOptions, apply_plan, mark_overtaken, plan_changes
from schemas.jobs import Stage
from schemas.memories import MemoryCreate
from workers import webhooks  # issue #5: the outbox hook in reconcile_work
from workers.branches import join_notify
from workers.celery_app import app
from workers.stage import run_stage, scope_of


def reconcile_work(c: Container, job: Job) -> dict[str, Any]:
    request = MemoryCreate.model_validate(job.request)
    project = c.tenancy.project(job.project_id) or {}
    options = WriteOptions.from_request(request, project.get("custom_categories"))
    scope = scope_of(job)
    facts, vectors = job.facts or [], job.embeddings or []
    plan, first_apply = job.plan, False
    recorded = c.jobs.events(job.id) if plan is not None else []
    if recorded:
        # An earlier attempt wrote the store and committed its events, then died before the stage was marked
        # done: all of its writes are in. Re-applying would undo what jobs of the scope did since whenever
        # one of them put back the very text this plan updated from (test_worker_kill found that). Only its
        # webhook deliveries may not have been sent: the outbox answers those still waiting.
        with c.engine.begin() as conn:
            deliveries = webhooks.memory_events_outbox(conn, job, recorded)
        webhooks.enqueue(deliveries)
        return {}
    if plan is None:
        plan = plan_changes(
            job_id=job.id,
            facts=facts,
            vectors=vectors,
            scope=scope,
            store=c.vector_store,
            llm=c.llm,
            embedder=c.embedder,
            infer=request.infer,
            k=c.settings.pipeline.similar_memories_k,
            roles=None if request.infer else [m.role for m in raw_memories(request.messages)],
            custom_prompt=project.get("custom_update_memory_prompt")
            or c.settings.pipeline.custom_update_memory_prompt,
            options=options,
        )
        # Persisted before any write: a redelivery re-applies this plan instead of deciding anew. Saved
        # only if no other delivery saved one first (two can overlap only after the scope lock expired).
        first_apply = c.jobs.save_plan(job.id, plan)
        if not first_apply:
            plan = (c.jobs.get(job.id) or job).plan or plan
    if not first_apply:
        # Issue #8: an earlier attempt saved this plan and died before committing (or overlaps us): jobs
        # of the scope that ran since win.
        plan = mark_overtaken(plan, vectors=vectors, scope=scope, store=c.vector_store, infer=request.infer)
    events, history = apply_plan(
        job_id=job.id,
        plan=plan,
        vectors=vectors,
        scope=scope,
        store=c.vector_store,
        options=options,
        first_apply=first_apply,
    )
    with c.engine.begin() as conn:
        c.history.record(job.project_id, history, conn=conn)
        c.jobs.record_events(job.id, job.project_id, events, conn=conn)
        # Webhooks (issue #5): the outbox rows commit with the events they announce ...
        deliveries = webhooks.memory_events_outbox(conn, job, events)
    webhooks.enqueue(deliveries)  # ... and are sent only once that commit happened.
    return {}


@app.task(bind=True, name="engram.reconcile", max_retries=None)  # our attempt cap governs retries
def reconcile(self: Task, job_id: str) -> None:
    # Notify follows once the graph branch (if any) has ended too.
    run_stage(self, job_id, Stage.RECONCILED, reconcile_work, next_task=join_notify, scope_locked=True)
