"""``POST /v1/feedback/``: feedback on a memory, stored for review."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ContainerDep, ProjectDep
from api.routers.memories import ERRORS
from engram import memories
from schemas.memories import FeedbackCreate

router = APIRouter(tags=["feedback"])


@router.post("/v1/feedback/", responses=ERRORS)
def give_feedback(body: FeedbackCreate, c: ContainerDep, project_id: ProjectDep) -> dict[str, Any]:
    memories.get(c, project_id, body.memory_id)  # 404 for a memory the project does not have
    feedback_id = c.feedback.add(project_id, body.memory_id, body.feedback, body.feedback_reason)
    return {
        "id": feedback_id,
        "memory_id": body.memory_id,
        "feedback": body.feedback,
        "feedback_reason": body.feedback_reason,
    }
