"""Batch ingest: many conversations in one request (JSON array or NDJSON), and the batch's status."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool

from api.deps import ContainerDep, DispatchDep, ProjectDep
from api.routers.memories import ERRORS
from engram import ingest
from engram.errors import NotFoundError
from engram.filters import FilterError

router = APIRouter(prefix="/v1/batches", tags=["batches"])
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
BATCH_BODY = {
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"type": "array", "items": {"type": "object"}},
                    {
                        "type": "object",
                        "properties": {"conversations": {"type": "array", "items": {"type": "object"}}},
                        "required": ["conversations"],
                    },
                ]
            }
        },
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
    "required": True,
}


def parse_items(raw: bytes, content_type: str) -> list[Any]:
    """A JSON array, ``{"conversations": [...]}``, or one JSON object per line (NDJSON)."""
    try:
        if content_type.split(";")[0].strip() in NDJSON_TYPES:
            return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FilterError(f"the body is not valid JSON/NDJSON: {exc!s:.200}") from exc
    if isinstance(body, dict) and isinstance(body.get("conversations"), list):
        return list(body["conversations"])
    if isinstance(body, list):
        return body
    raise FilterError('send a JSON array of conversations, {"conversations": [...]}, or NDJSON')


@router.post("/", status_code=status.HTTP_202_ACCEPTED, responses=ERRORS, openapi_extra={"requestBody": BATCH_BODY})
async def create_batch(request: Request, c: ContainerDep, project_id: ProjectDep, dispatch: DispatchDep) -> Any:
    """Queue every valid conversation (each may carry an ``idempotency_key``); report the rejected ones."""
    items = parse_items(await request.body(), request.headers.get("content-type", ""))
    if not items:
        raise FilterError("the batch is empty")
    accepted = await run_in_threadpool(ingest.submit_batch, c, project_id, items, dispatch)
    return {
        "batch_id": accepted.batch_id,
        "status": "PENDING",
        "accepted": accepted.accepted,
        "duplicates": accepted.duplicates,
        "rejected": accepted.rejected,
        "event_ids": accepted.event_ids,
    }


@router.get("/{batch_id}/", responses=ERRORS)
def get_batch(batch_id: str, c: ContainerDep, project_id: ProjectDep) -> dict[str, Any]:
    """Counts per job state, and the failed or rejected items with their reasons."""
    batch = c.batches.get(batch_id, project_id)
    if batch is None:
        raise NotFoundError(f"batch {batch_id} not found")
    counts = c.jobs.batch_counts(batch_id)
    queued = sum(counts.values())
    done = counts.get("SUCCEEDED", 0) + counts.get("FAILED", 0)
    return {
        "batch_id": batch_id,
        "total": batch["total"],
        "counts": {s: counts.get(s, 0) for s in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")},
        "rejected": batch["rejected"],
        "failed": c.jobs.batch_failures(batch_id),
        # Per-memory outcomes so far: ADD / UPDATE / DELETE (a fact already known leaves none).
        "events": {kind: n for kind, n in sorted(c.jobs.batch_events(batch_id).items())},
        "done": done == queued,
        "created_at": batch["created_at"],
    }
