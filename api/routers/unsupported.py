"""Routes of the mem0ai client that engram does not serve yet: a clear 501, never HTML or a 500."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import PrincipalDep

router = APIRouter(tags=["not implemented"])

NOT_YET = [
    ("/v1/summary/", ["POST"], "memory summaries"),
    ("/v2/entities/{entity_type}/{entity_id}/profile/", ["GET", "POST"], "entity profiles"),
    ("/v2/profiles/jobs/", ["GET", "POST"], "profile jobs"),
    ("/v2/profiles/jobs/{job_id}/", ["GET"], "profile jobs"),
    ("/v2/profiles/settings/", ["GET", "POST"], "profile settings"),
    ("/api/v1/orgs/organizations/{org_id}/projects/{project_id}/", ["GET", "PATCH"], "project settings"),
]


def _not_implemented(feature: str):  # type: ignore[no-untyped-def]
    def handler(_: PrincipalDep) -> JSONResponse:
        message = f"engram does not implement {feature} yet"
        return JSONResponse({"error": message, "detail": message}, status_code=501)

    return handler


for path, methods, feature in NOT_YET:
    router.add_api_route(
        path,
        _not_implemented(feature),
        methods=methods,
        status_code=501,
        responses={501: {}, 401: {}},
        summary=f"Not implemented: {feature}",
    )
