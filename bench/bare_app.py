"""The ceiling for section 3: a bare FastAPI endpoint on the same route, same server, same machine.

It parses the JSON body and answers 202 with an event id, as engram's add does, with no validation,
no SQL and no broker. ``uvicorn --factory bench.bare_app:create_app``.
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/memories/")
    async def add(request: Request) -> JSONResponse:
        await request.json()
        return JSONResponse({"status": "PENDING", "event_id": str(uuid.uuid4())}, status_code=202)

    return app
