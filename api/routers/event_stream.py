"""``GET /v1/event/{id}/stream``: a job's progress as server-sent events, until it ends.

Events: ``stage`` when the job's status or stage changes, ``memory`` once per per-memory event
(ADD/UPDATE/DELETE, as ``GET /v1/event/{id}/`` reports them), and a last ``end``. SQL is polled (the
truth about jobs, DESIGN.md #1): no broker subscription, so any API process can serve any stream.

A job with graph memory also shows ``graph_status`` (and ``graph_error``) in ``stage`` and ``end``, a
change of ``graph_status`` is a ``stage`` event, and a graph branch that ends DONE sends one
``relations`` event, ``{added, deleted}`` as ``GET /v1/event/{id}/`` reports them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import ContainerDep, ProjectDep
from config.container import Container
from engram.errors import NotFoundError
from engram.sql.branches import BranchStore, GraphBranch
from engram.sql.jobs import Job

router = APIRouter(prefix="/v1/event", tags=["events"])
POLL_SECONDS = 0.2
# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0
# A job stuck longer than this (a lost message, a dead worker) ends the stream instead of holding it open.
MAX_STREAM_SECONDS = 3600.0
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "text/event-stream: `stage`, `memory`, `relations` (graph memory) and a final `end` "
        "event, each with JSON data",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    401: {"content": {"application/json": {"schema": {"type": "object"}}}},
    404: {"content": {"application/json": {"schema": {"type": "object"}}}},
}


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def state_of(job: Job, branch: GraphBranch | None = None) -> dict[str, Any]:
    state = {"id": job.id, "status": job.status.value, "stage": job.stage.value, "attempts": job.attempts,
             "error": job.error}
    if branch is not None and branch.state is not None:  # graph memory is on for this job
        state.update(graph_status=branch.state, graph_error=branch.error)
    return state


async def follow(c: Container, job_id: str, project_id: str, request: Request) -> AsyncIterator[str]:
    started = last_sent = time.monotonic()
    last_state: tuple[str, str, str | None] | None = None
    sent = 0
    relations_sent = False
    branches = BranchStore(c.engine)
    while True:
        job = await run_in_threadpool(c.jobs.get, job_id, project_id)
        if job is None:
            yield sse("end", {"id": job_id, "status": None, "error": "the job no longer exists"})
            return
        # Read after the job: a terminal job's graph branch has ended by then (notify waits for it).
        branch = await run_in_threadpool(branches.get, job_id)
        state = (job.status.value, job.stage.value, branch.state if branch else None)
        if state != last_state:
            last_state = state
            yield sse("stage", state_of(job, branch))
            last_sent = time.monotonic()
        events = await run_in_threadpool(c.jobs.events, job_id)
        for seq, event in enumerate(events[sent:], start=sent):
            yield sse("memory", event.model_dump(), event_id=f"{job_id}:{seq}")
            last_sent = time.monotonic()
        sent = max(sent, len(events))
        if branch is not None and branch.state == "DONE" and not relations_sent:
            # Recorded in the commit that ended the branch: all of them are there once it reads DONE.
            relations = await run_in_threadpool(branches.relation_events, job_id)
            yield sse("relations", relations.model_dump(), event_id=f"{job_id}:relations")
            relations_sent = True
            last_sent = time.monotonic()
        if job.status.terminal:
            yield sse("end", state_of(job, branch))
            return
        if time.monotonic() - started > MAX_STREAM_SECONDS:
            closed = f"stream closed after {MAX_STREAM_SECONDS:g}s; poll the job"
            yield sse("end", {**state_of(job, branch), "error": closed})
            return
        if await request.is_disconnected():
            return
        if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_SECONDS)


@router.get("/{event_id}/stream", response_class=StreamingResponse, responses=STREAM_RESPONSES)
async def stream_event(event_id: str, request: Request, c: ContainerDep, project_id: ProjectDep) -> StreamingResponse:
    """Follow a job live: its stage changes and per-memory events, as server-sent events, until it ends."""
    if await run_in_threadpool(c.jobs.get, event_id, project_id) is None:
        raise NotFoundError(f"event {event_id} not found")
    return StreamingResponse(
        follow(c, event_id, project_id, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
