"""``GET /v1/ping/``: the mem0ai client calls it when it starts and refuses to run without ids."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import PrincipalDep

router = APIRouter(tags=["account"])


@router.get("/v1/ping/")
def ping(principal: PrincipalDep) -> dict[str, Any]:
    return {
        "status": "ok",
        "message": "API key is valid",
        "org_id": principal.org_id,
        "project_id": principal.project_id,
        "user_email": None,
    }
