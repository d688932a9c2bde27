"""Batch update and delete (up to ``MAX_BATCH`` memories; all or nothing on unknown ids)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.deps import ContainerDep, ProjectDep
from api.routers.memories import ERRORS
from engram import memories
from schemas.memories import BatchDelete, BatchUpdate

router = APIRouter(prefix="/v1/batch", tags=["batch"])
MAX_BATCH = 1000


def _check_size(count: int) -> None:
    if count > MAX_BATCH:
        # Mem0's contract (issue 3): "up to 1000 memories; more → 400".
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{count} memories in one batch; at most {MAX_BATCH}")


@router.put("/", responses=ERRORS)
def batch_update(body: BatchUpdate, c: ContainerDep, project_id: ProjectDep) -> dict[str, str]:
    _check_size(len(body.memories))
    count = memories.batch_update(c, project_id, [m.model_dump() for m in body.memories])
    return {"message": f"Successfully updated {count} memories"}


@router.delete("/", responses=ERRORS)
def batch_delete(body: BatchDelete, c: ContainerDep, project_id: ProjectDep) -> dict[str, str]:
    _check_size(len(body.memories))
    count = memories.batch_delete(c, project_id, [m.memory_id for m in body.memories])
    return {"message": f"Successfully deleted {count} memories"}
