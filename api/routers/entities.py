"""Entities (users, agents, apps, runs) of a project, and deleting one with all its memories."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ContainerDep, ProjectDep, SenderDep
from api.routers.memories import ERRORS
from engram import memories
from engram.graph.query import clear_scope

router = APIRouter(tags=["entities"])


@router.get("/v1/entities/", responses=ERRORS)
def list_entities(c: ContainerDep, project_id: ProjectDep) -> dict[str, Any]:
    results = memories.entities(c, project_id)
    return {"count": len(results), "results": results}


@router.delete("/v2/entities/{entity_type}/{entity_name}/", responses=ERRORS)
def delete_entity(
    entity_type: str, entity_name: str, c: ContainerDep, project_id: ProjectDep, sender: SenderDep
) -> dict[str, str]:
    count = memories.delete_entity(c, project_id, entity_type, entity_name)
    if c.settings.graph_store.provider and entity_type in ("user", "agent", "run"):
        clear_scope(c, sender, project_id, {f"{entity_type}_id": entity_name})
    return {"message": f"Entity deleted successfully. {count} memories deleted."}
