"""Graph memory of a scope: its entities and relations. Answered by the shard's graph worker (the API
never opens a graph file); 503 with Retry-After when that worker does not answer in time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import ContainerDep, ProjectDep, SenderDep
from engram.graph.query import GraphUnavailable, graph_ids, list_graph
from schemas.graph import GraphEntityList, GraphRelationList

router = APIRouter(prefix="/v1/graph", tags=["graph"])
RETRY_AFTER_SECONDS = "5"
ERRORS: dict[int | str, dict[str, Any]] = {400: {}, 401: {}, 404: {}, 503: {}}
Limit = Annotated[int, Query(ge=1, le=10_000)]


def _rows(
    c: ContainerDep,
    sender: SenderDep,
    project_id: str,
    what: Literal["entities", "relations"],
    scope: dict[str, str | None],
    limit: int,
) -> list[dict[str, Any]]:
    if not c.settings.graph_store.enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "graph memory is not enabled on this deployment")
    ids = graph_ids(scope)
    if not ids:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "give user_id, agent_id or run_id to say whose graph")
    try:
        return list_graph(c, sender, project_id, ids, what, limit=limit)
    except GraphUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers={"Retry-After": RETRY_AFTER_SECONDS}
        ) from exc


@router.get("/entities/", response_model=GraphEntityList, responses=ERRORS)
def list_entities(
    c: ContainerDep,
    sender: SenderDep,
    project_id: ProjectDep,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    limit: Limit = 1000,
) -> dict[str, Any]:
    """The entities of a user, agent or run (the ids you leave out match any)."""
    scope = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    rows = _rows(c, sender, project_id, "entities", scope, limit)
    return {"count": len(rows), "results": rows}


@router.get("/relations/", response_model=GraphRelationList, responses=ERRORS)
def list_relations(
    c: ContainerDep,
    sender: SenderDep,
    project_id: ProjectDep,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    limit: Limit = 1000,
) -> dict[str, Any]:
    """The relations ``{source, relationship, destination}`` of a user, agent or run."""
    scope = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    rows = _rows(c, sender, project_id, "relations", scope, limit)
    return {"count": len(rows), "results": rows}
