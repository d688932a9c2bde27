"""What a webhook POSTs: Mem0's ``event_details`` plus the job id, scope and timestamps.

The body is rendered once, when the outbox row is written, and stored: every attempt signs and
sends the very same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from schemas.jobs import MemoryEvent

MEMORY_EVENT_TYPES = {"ADD": "memory_add", "UPDATE": "memory_update", "DELETE": "memory_delete"}
JOB_EVENT_TYPES = {"SUCCEEDED": "job_succeeded", "FAILED": "job_failed"}
EVENT_TYPES = (*MEMORY_EVENT_TYPES.values(), *JOB_EVENT_TYPES.values())
SCOPE_KEYS = ("user_id", "agent_id", "run_id", "app_id")


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def scope_of(request: dict[str, Any]) -> dict[str, str]:
    """The entity ids the add request named (top level, or inside v2/v3 ``filters``)."""
    nested = request.get("filters") if isinstance(request.get("filters"), dict) else {}
    found = {k: request.get(k) or nested.get(k) for k in SCOPE_KEYS}  # type: ignore[union-attr]
    return {k: str(v) for k, v in found.items() if v}


def render(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=False)


def memory_body(
    event: MemoryEvent, *, job_id: str, project_id: str, scope: dict[str, str], at: datetime,
    job_created_at: datetime | None,
) -> str:
    data: dict[str, Any] = {"memory": event.memory}
    if event.previous_memory is not None:
        data["previous_memory"] = event.previous_memory
    return render({
        "type": MEMORY_EVENT_TYPES[event.event],
        "timestamp": iso(at),
        "event_details": {"id": event.id, "data": data, "event": event.event},
        "event_id": job_id,  # Mem0 calls jobs "events": the id GET /v1/event/{id}/ answers for
        "job_id": job_id,
        "project_id": project_id,
        "scope": scope,
        "job_created_at": iso(job_created_at),
    })


def job_body(
    status: str, *, job_id: str, project_id: str, scope: dict[str, str], at: datetime, error: str | None,
    results: Sequence[MemoryEvent], created_at: datetime | None, started_at: datetime | None,
    graph: dict[str, Any] | None = None,
) -> str:
    """``graph``: for a job with graph memory, its ``relations`` (Mem0's add shape), ``graph_status`` and
    ``graph_error``, placed beside ``results`` as in the add response (``GraphOutcome.add_fields``)."""
    data: dict[str, Any] = {"status": status, "error": error, "results": [r.model_dump() for r in results]}
    if graph is not None:
        data.update(graph)
    return render({
        "type": JOB_EVENT_TYPES[status],
        "timestamp": iso(at),
        "event_details": {"id": job_id, "data": data, "event": status},
        "event_id": job_id,
        "job_id": job_id,
        "project_id": project_id,
        "scope": scope,
        "job_created_at": iso(created_at),
        "job_started_at": iso(started_at),
        "job_finished_at": iso(at),
    })
