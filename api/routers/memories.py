"""Memories: add (as a job), search, list, get, update, delete, history."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import ContainerDep, EnqueueDep, ProjectDep
from engram import ingest, memories
from engram.errors import NotFoundError
from schemas.jobs import AddAccepted, AddCompleted, JobStatus
from schemas.memories import (
    Deleted,
    HistoryEntry,
    MemoryCreate,
    MemoryList,
    MemoryPublic,
    MemoryUpdate,
    ScopeFields,
    SearchRequest,
)

router = APIRouter(prefix="/v1/memories", tags=["memories"])
SYNC_POLL_SECONDS = 0.05


def _scope_params(
    user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None, app_id: str | None = None
) -> ScopeFields:
    ids = ScopeFields(user_id=user_id, agent_id=agent_id, run_id=run_id, app_id=app_id)
    if not ids.has_scope():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "one of user_id, agent_id or run_id is required")
    return ids


@router.post(
    "/",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AddAccepted | AddCompleted,
    responses={200: {"model": AddCompleted}, 413: {}, 503: {}},
)
async def add_memories(body: MemoryCreate, c: ContainerDep, project_id: ProjectDep, enqueue: EnqueueDep) -> Any:
    """Queue a conversation for extraction. ``async_mode=false`` waits for the job and returns its events."""
    job_id = await run_in_threadpool(ingest.submit, c, project_id, body, enqueue)
    if body.async_mode:
        return AddAccepted(event_id=job_id)
    deadline = time.monotonic() + c.settings.pipeline.sync_wait_seconds
    while time.monotonic() < deadline:
        job = await run_in_threadpool(c.jobs.get, job_id, project_id)
        if job is not None and job.status.terminal:
            if job.status is JobStatus.FAILED:
                return JSONResponse({"error": job.error, "event_id": job_id, "status": job.status.value}, 422)
            events = await run_in_threadpool(c.jobs.events, job_id)
            return JSONResponse(
                AddCompleted(results=events, event_id=job_id, status=job.status.value).model_dump(mode="json"), 200
            )
        await asyncio.sleep(SYNC_POLL_SECONDS)
    return AddAccepted(message="Still processing; poll the event", event_id=job_id)


@router.post("/search/", response_model=MemoryList)
def search_memories(body: SearchRequest, c: ContainerDep, project_id: ProjectDep) -> MemoryList:
    results = memories.search(
        c, project_id, body, body.query, limit=body.limit, threshold=body.threshold, metadata=body.filters
    )
    return MemoryList(results=results)


@router.get("/", response_model=MemoryList)
def list_memories(
    c: ContainerDep,
    project_id: ProjectDep,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    app_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> MemoryList:
    ids = _scope_params(user_id, agent_id, run_id, app_id)
    return MemoryList(results=memories.list_memories(c, project_id, ids, limit=limit, offset=offset))


@router.delete("/", response_model=Deleted)
def delete_all_memories(
    c: ContainerDep,
    project_id: ProjectDep,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    app_id: str | None = None,
) -> Deleted:
    ids = _scope_params(user_id, agent_id, run_id, app_id)
    count = memories.delete_all(c, project_id, ids)
    return Deleted(message=f"{count} memories deleted successfully!")


@router.get("/{memory_id}/", response_model=MemoryPublic, responses={404: {}})
def get_memory(memory_id: str, c: ContainerDep, project_id: ProjectDep) -> MemoryPublic:
    return memories.to_public(memories.get(c, project_id, memory_id))


@router.put("/{memory_id}/", response_model=MemoryPublic, responses={404: {}})
def update_memory(memory_id: str, body: MemoryUpdate, c: ContainerDep, project_id: ProjectDep) -> MemoryPublic:
    return memories.update(c, project_id, memory_id, text=body.text, metadata=body.metadata)


@router.delete("/{memory_id}/", response_model=Deleted, responses={404: {}})
def delete_memory(memory_id: str, c: ContainerDep, project_id: ProjectDep) -> Deleted:
    memories.delete(c, project_id, memory_id)
    return Deleted(message="Memory deleted successfully!")


@router.get("/{memory_id}/history/", response_model=list[HistoryEntry], responses={404: {}})
def memory_history(memory_id: str, c: ContainerDep, project_id: ProjectDep) -> list[HistoryEntry]:
    try:
        return memories.history(c, project_id, memory_id)
    except NotFoundError:
        raise
