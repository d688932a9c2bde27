"""Memories, v1 routes: add (as a job), search, list, get, update, delete, history."""

from __future__ import annotations

import ast
import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import AdmissionDep, ContainerDep, ProjectDep, SenderDep
from engram import ingest, memories
from engram.filters import FilterError, scope_ids
from engram.filters import parse as parse_filters
from engram.graph.query import clear_scope, relations_for_search
from engram.sql.branches import BranchStore
from schemas.jobs import GRAPH_FIELDS, AddAccepted, AddCompleted, JobStatus
from schemas.memories import (
    Deleted,
    HistoryEntry,
    MemoryCreate,
    MemoryList,
    MemoryPublic,
    MemoryUpdate,
    Relation,
    ScopeFields,
    SearchRequest,
)

router = APIRouter(prefix="/v1/memories", tags=["memories"])
SYNC_POLL_SECONDS = 0.05
ERRORS: dict[int | str, dict[str, Any]] = {400: {}, 401: {}, 404: {}, 409: {}, 413: {}, 429: {}, 503: {}}
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)]


@router.post(
    "/",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AddAccepted | AddCompleted,
    responses={200: {"model": AddCompleted}, **ERRORS},
)
async def add_memories(
    body: MemoryCreate,
    c: ContainerDep,
    project_id: ProjectDep,
    admission: AdmissionDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Queue a conversation for extraction. ``async_mode=false`` waits for the job and returns its events.

    With an ``Idempotency-Key`` header, a repeated request returns the first one's event id.
    """
    # Committed and queued together with the adds that arrive beside it (engram/admission.py).
    job_id = await admission.submit((project_id, ingest.new_job(c, body, idempotency_key)))
    if body.async_mode:
        # A ready response skips FastAPI's re-validation against the response model (the hot path).
        return JSONResponse(AddAccepted(event_id=job_id).model_dump(mode="json"), status.HTTP_202_ACCEPTED)
    deadline = time.monotonic() + c.settings.pipeline.sync_wait_seconds
    while time.monotonic() < deadline:
        job = await run_in_threadpool(c.jobs.get, job_id, project_id)
        if job is not None and job.status.terminal:
            if job.status is JobStatus.FAILED:
                return JSONResponse({"error": job.error, "event_id": job_id, "status": job.status.value}, 422)
            events = await run_in_threadpool(c.jobs.events, job_id)
            # Mem0's add response with graph memory: "relations" beside "results" (the branch has ended).
            graph = await run_in_threadpool(BranchStore(c.engine).outcome, job_id)
            completed = AddCompleted(
                results=events, event_id=job_id, status=job.status.value, **(graph.add_fields() if graph else {})
            )
            answer = completed.model_dump(mode="json", exclude=set(GRAPH_FIELDS) if graph is None else None)
            return JSONResponse(answer, 200)
        await asyncio.sleep(SYNC_POLL_SECONDS)
    return AddAccepted(message="Still processing; poll the event", event_id=job_id)


@router.post("/search/", response_model=MemoryList, responses=ERRORS)
def search_memories(body: SearchRequest, c: ContainerDep, project_id: ProjectDep, sender: SenderDep) -> MemoryList:
    """Search (v1: ids at the top level; ``filters`` in the v2 language also accepted)."""
    where = memories.require_scope(
        memories.build_where(body.filters, body, categories=body.categories, metadata=body.metadata)
    )
    mode = body.search_mode or ("hybrid" if body.keyword_search else None)
    results = memories.search(
        c,
        project_id,
        where,
        body.query,
        limit=body.limit,
        threshold=body.threshold,
        include_expired=body.show_expired,
        mode=mode,
        alpha=body.alpha,
    )
    if not body.enable_graph or not c.settings.graph_store.provider:
        return MemoryList(results=results)
    # Graph relations degrade, never fail: a slow or absent graph worker leaves the vector results.
    ids = ScopeFields.model_validate(
        {**filters_scope(body.filters), **body.model_dump(include=set(SCOPE_KEYS), exclude_none=True)}
    )
    relations, reason = relations_for_search(c, sender, project_id, ids, body.query)
    return MemoryList(results=results, relations=[Relation(**r) for r in relations], relations_error=reason)


SCOPE_KEYS = ("user_id", "agent_id", "run_id")


def filters_scope(raw: dict[str, Any] | None) -> dict[str, str]:
    """The entity ids a v2 filter pins by equality (what the graph can be asked about)."""
    return {k: v for k, v in scope_ids(parse_filters(raw)).items() if k in SCOPE_KEYS}


@router.get("/", response_model=list[MemoryPublic], responses=ERRORS)
def list_memories(
    c: ContainerDep,
    project_id: ProjectDep,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    app_id: str | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[MemoryPublic]:
    """Older clients' get_all: a plain list, newest first."""
    ids = ScopeFields(user_id=user_id, agent_id=agent_id, run_id=run_id, app_id=app_id)
    where = memories.require_scope(memories.build_where(None, ids))
    return memories.page(c, project_id, where, page=page, page_size=page_size)[1]


def parse_filters_param(raw: str | None) -> dict[str, Any] | None:
    """The client's delete_all sends ``filters`` as a query parameter: JSON, or a Python dict's repr."""
    if not raw:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(raw)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return value
    raise FilterError("the filters parameter must be a JSON object")


@router.delete("/", response_model=Deleted, responses=ERRORS)
def delete_all_memories(
    c: ContainerDep,
    project_id: ProjectDep,
    sender: SenderDep,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    app_id: str | None = None,
    filters: str | None = None,
) -> Deleted:
    """Delete every memory matching the ids (or filters). Refuses an empty filter: no accidental wipe."""
    ids = ScopeFields(user_id=user_id, agent_id=agent_id, run_id=run_id, app_id=app_id)
    raw = parse_filters_param(filters)
    where = memories.require_scope(memories.build_where(raw, ids))
    count = memories.delete_matching(c, project_id, where)
    if c.settings.graph_store.provider:
        # The scope's graph goes too (asynchronously, on its shard); a wildcard scope clears nothing.
        clear_scope(
            c,
            sender,
            project_id,
            ScopeFields.model_validate(
                {**filters_scope(raw), **ids.model_dump(include=set(SCOPE_KEYS), exclude_none=True)}
            ),
        )
    return Deleted(message=f"{count} memories deleted successfully!")


@router.get("/{memory_id}/", response_model=MemoryPublic, responses=ERRORS)
def get_memory(memory_id: str, c: ContainerDep, project_id: ProjectDep) -> MemoryPublic:
    return memories.to_public(memories.get(c, project_id, memory_id))


@router.put("/{memory_id}/", response_model=MemoryPublic, responses=ERRORS)
def update_memory(memory_id: str, body: MemoryUpdate, c: ContainerDep, project_id: ProjectDep) -> MemoryPublic:
    return memories.update(
        c,
        project_id,
        memory_id,
        text=body.text,
        metadata=body.metadata,
        changes=set(body.model_fields_set),
        expiration_date=body.expiration_date,
        timestamp=body.timestamp,
    )


@router.delete("/{memory_id}/", response_model=Deleted, responses=ERRORS)
def delete_memory(memory_id: str, c: ContainerDep, project_id: ProjectDep) -> Deleted:
    memories.delete(c, project_id, memory_id)
    return Deleted(message="Memory deleted successfully!")


@router.get("/{memory_id}/history/", response_model=list[HistoryEntry], responses=ERRORS)
def memory_history(memory_id: str, c: ContainerDep, project_id: ProjectDep) -> list[HistoryEntry]:
    return memories.history(c, project_id, memory_id)
