"""Jobs, as Mem0 calls them: events. ``GET /v1/event/{id}/`` is the polling endpoint."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ContainerDep, ProjectDep
from engram.errors import NotFoundError
from engram.sql.branches import BranchStore
from schemas.jobs import JobPublic

router = APIRouter(prefix="/v1/event", tags=["events"])


@router.get("/{event_id}/", response_model=JobPublic, responses={404: {}})
def get_event(event_id: str, c: ContainerDep, project_id: ProjectDep) -> JobPublic:
    job = c.jobs.get(event_id, project_id)
    if job is None:
        raise NotFoundError(f"event {event_id} not found")
    branches = BranchStore(c.engine)
    graph = branches.get(job.id)  # the graph branch, beside reconcile (None state: no graph memory)
    return JobPublic(
        id=job.id,
        status=job.status,
        stage=job.stage,
        attempts=job.attempts,
        error=job.error,
        results=c.jobs.events(job.id) if job.status.terminal else [],
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        request=job.request,
        graph_status=graph.state if graph else None,
        graph_error=graph.error if graph else None,
        relations=branches.relation_events(job.id) if graph and graph.state == "DONE" else None,
    )
