"""``GET /health``: can this process reach Redis, SQL and the vector store?"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import ContainerDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(c: ContainerDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    for name, probe in (("redis", c.redis.ping), ("sql", c.jobs.ping), ("vector_store", c.vector_store.ping)):
        try:
            await run_in_threadpool(probe)
            checks[name] = "ok"
        except Exception as exc:  # a health check reports failures, it does not raise them
            checks[name] = f"error: {type(exc).__name__}: {exc!s:.200}"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503)
