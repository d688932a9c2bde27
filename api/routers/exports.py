"""Memory exports, as the platform has them: request one (a job), then fetch it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ContainerDep, ProjectDep, SenderDep
from api.routers.memories import ERRORS
from engram import memories
from engram.errors import NotFoundError
from schemas.memories import ExportCreate, ExportGet

router = APIRouter(prefix="/v1/exports", tags=["exports"])


@router.post("/", responses=ERRORS)
def create_export(body: ExportCreate, c: ContainerDep, project_id: ProjectDep, sender: SenderDep) -> dict[str, Any]:
    """Queue an export of the memories matching the filters (or the ids given)."""
    memories.build_where(body.filters, body)  # a bad filter is a 400 now, not a FAILED export later
    request = {
        "schema": body.schema_,
        "filters": body.filters,
        **body.model_dump(include={"user_id", "agent_id", "run_id", "app_id"}, exclude_none=True),
    }
    export_id = c.exports.create(project_id, request)
    sender.send_task("engram.export", args=[export_id])
    return {
        "message": "Memory export request received. The export will be ready in a few seconds.",
        "id": export_id,
        "status": "PENDING",
    }


@router.post("/get/", responses=ERRORS)
def get_export(body: ExportGet, c: ContainerDep, project_id: ProjectDep) -> dict[str, Any]:
    """One export by ``memory_export_id``, or the project's newest."""
    export = c.exports.get(project_id, body.memory_export_id)
    if export is None:
        raise NotFoundError("export not found")
    answer: dict[str, Any] = {"id": export["id"], "status": export["status"], "error": export["error"]}
    if export["result"] is not None:
        answer.update(export["result"])
    return answer
