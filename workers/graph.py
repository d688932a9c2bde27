"""Tasks of the graph workers: the graph stage of a job, reads for the API, clearing a scope.

Only the worker consuming ``graph.<n>`` (concurrency 1) runs these, so one process owns each shard
file (DESIGN.md #4); every task checks the shard it was sent to is the one its process owns.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task

from config.container import Container
from engram.errors import PermanentError, RateLimited, TransientError
from engram.graph import reads, rpc
from engram.graph.extract import plan_graph
from engram.graph.port import GraphStore
from engram.graph.routing import GraphNotOwned, check_owner
from engram.sql.branches import BranchStore
from engram.sql.jobs import Job
from schemas.jobs import GraphState, JobStatus
from schemas.memories import MemoryCreate
from workers import runtime
from workers.branches import join_notify
from workers.celery_app import app
from workers.stage import backoff_seconds, scope_of

log = logging.getLogger(__name__)


def own_store(c: Container, shard: int) -> GraphStore:
    store = c.graph_store  # GraphNotOwned in any process that is not a graph worker
    check_owner(store.shard, shard)
    return store


def graph_work(c: Container, store: GraphStore, job: Job) -> dict[str, list[dict[str, str]]]:
    """Plan and apply the job's graph changes; the events of an earlier, committed apply otherwise."""
    applied = store.applied(job.id)
    if applied is not None:
        return applied  # a previous delivery committed, then died before SQL heard of it
    request = MemoryCreate.model_validate(job.request)
    changes = plan_graph(
        messages=request.messages,
        facts=job.facts or [],
        scope=scope_of(job),
        store=store,
        llm=c.llm,
        embedder=c.embedder,
        dedupe_threshold=c.settings.graph_store.dedupe_threshold,
    )
    if changes.entities or changes.added or changes.deleted:
        store.apply(job.id, changes)
    return changes.events()


def _end(c: Container, job: Job, state: GraphState, error: str | None = None, events: Any = None) -> None:
    if error:
        log.warning("job %s: graph branch %s: %s", job.id, state, error)
    if not BranchStore(c.engine).finish(job.id, job.project_id, state, error=error, events=events):
        log.info("job %s: graph branch had already ended (its deadline?); %s not recorded", job.id, state)
    join_notify(None, c, job, False)  # the graph worker is one per shard: notify elsewhere


@app.task(bind=True, name="engram.graph.ingest", max_retries=None)  # our attempt cap governs retries
def graph_ingest(self: Task, job_id: str, shard: int) -> None:
    """The graph stage of a job. Its failure never fails the job: the memories are stored by then."""
    c = runtime.container()
    branches = BranchStore(c.engine)
    branch, job = branches.get(job_id), c.jobs.get(job_id)
    if branch is None or job is None:
        log.error("job %s not found; graph message dropped", job_id)
        return
    # A branch the deadline failed (the graph worker was down or slow) still gets its graph write when its
    # message comes after all: the graph then holds what the conversation said, and search finds it. Only
    # the branch's record changes (FAILED to DONE, with its relations); the job's status, results and the
    # notifications sent when it ended stay as they were (BranchStore.finish).
    if not branch.open and not branch.expired:
        if branch.state is not None:
            join_notify(None, c, job, True)  # a redelivery of a branch that already ended
        return
    if branch.status is JobStatus.FAILED:
        _end(c, job, "SKIPPED", "the job failed before its graph stage ran")  # a no-op on an expired branch
        return
    p = c.settings.pipeline
    attempt = branches.start_attempt(job_id)
    if attempt > p.max_attempts_per_stage:  # deliveries that kept killing the worker
        _end(c, job, "FAILED", f"graph: gave up after {p.max_attempts_per_stage} attempts")
        return
    retry_after: float | None = None
    try:
        events = graph_work(c, own_store(c, shard), job)
    except (PermanentError, GraphNotOwned) as exc:
        _end(c, job, "FAILED", f"graph: {exc}")
        return
    except RateLimited as exc:  # waiting for the shared LLM rate limit is no failed attempt (as in run_stage)
        branches.refund_attempt(job_id)
        raise self.retry(countdown=exc.retry_after_seconds or p.retry_backoff_seconds, exc=exc) from exc
    except TransientError as exc:
        error: Exception = exc
        retry_after = exc.retry_after_seconds
    except Exception as exc:  # unknown failure: retried within the cap, then recorded on the job
        log.exception("graph stage of job %s raised", job_id)
        error = exc
    else:
        _end(c, job, "DONE", events=events)
        return
    reason = f"graph: {type(error).__name__}: {error!s:.500}"
    if attempt >= p.max_attempts_per_stage:
        _end(c, job, "FAILED", f"{reason} (after {attempt} attempts)")
        return
    countdown = retry_after if retry_after is not None else backoff_seconds(
        attempt, p.retry_backoff_seconds, p.retry_backoff_max_seconds
    )
    log.info("job %s: %s; graph attempt %d, retry in %.1fs", job_id, reason, attempt, countdown)
    raise self.retry(countdown=countdown, exc=error)


@app.task(name="engram.graph.read")
def graph_read(shard: int, op: str, params: dict[str, Any], reply_to: str, deadline: float) -> None:
    """Answer a read for the API through Redis (``engram.graph.rpc``); never retried: the caller waits briefly."""
    if time.time() > deadline:
        return  # the caller has given up; the shard's time is better spent on the next message
    c = runtime.container()
    try:
        result = reads.answer(own_store(c, shard), op, params)
    except Exception as exc:  # told to the caller, then raised so the failure shows in the worker and Flower
        rpc.reply(c.redis, reply_to, {"shard": shard, "ok": False, "error": f"{type(exc).__name__}: {exc!s:.300}"})
        raise
    rpc.reply(c.redis, reply_to, {"shard": shard, "ok": True, "result": result})


@app.task(
    bind=True,
    name="engram.graph.clear",
    autoretry_for=(TransientError, OSError),
    retry_backoff=True,
    max_retries=5,
)
def graph_clear(self: Task, shard: int, project_id: str, ids: dict[str, str]) -> None:
    """Delete a scope's entities and relations (``delete_all`` of its memories asked for it)."""
    if not ids:
        raise ValueError("refusing to clear a graph without user, agent or run id")
    count = own_store(runtime.container(), shard).clear(project_id, ids)
    log.info("cleared %d graph entities of %s in project %s", count, ids, project_id)
