"""Accepting a conversation: check limits, record the job, enqueue its first stage."""

from __future__ import annotations

import json
from collections.abc import Callable

import kombu.exceptions
import redis.exceptions

from config.container import Container
from engram.ids import new_job_id
from schemas.jobs import JobStatus
from schemas.memories import MemoryCreate


class BrokerUnavailable(RuntimeError):
    """The queue could not take the job (answered with 503 and Retry-After)."""


class LimitExceeded(ValueError):
    """A request is larger than the deployment allows (answered with 413)."""


def check_limits(request: MemoryCreate, c: Container) -> None:
    limits = c.settings.api
    if len(request.messages) > limits.max_messages_per_request:
        raise LimitExceeded(f"{len(request.messages)} messages; at most {limits.max_messages_per_request} per request")
    for i, message in enumerate(request.messages):
        if len(message.content) > limits.max_message_chars:
            raise LimitExceeded(
                f"messages[{i}] has {len(message.content)} characters; at most {limits.max_message_chars}"
            )
    if request.metadata is not None:
        size = len(json.dumps(request.metadata, default=str).encode())
        if size > limits.max_metadata_bytes:
            raise LimitExceeded(f"metadata is {size} bytes; at most {limits.max_metadata_bytes}")


def submit(c: Container, project_id: str, request: MemoryCreate, enqueue: Callable[[str], None]) -> str:
    """Record the job (PENDING) and enqueue it. The SQL row is written first: it is the truth."""
    check_limits(request, c)
    job_id = new_job_id()
    body = request.model_dump(mode="json", exclude_none=True)
    scope = {k: getattr(request, k) or "" for k in ("user_id", "agent_id", "run_id")}
    c.jobs.create(job_id, project_id, body, scope)
    try:
        enqueue(job_id)
    except (OSError, ConnectionError, kombu.exceptions.OperationalError, redis.exceptions.RedisError) as exc:
        # The client will retry; a job it never learned the id of must not run later as a duplicate.
        c.jobs.finish(job_id, JobStatus.FAILED, f"could not enqueue: {exc!s:.300}")
        raise BrokerUnavailable("the job queue is unavailable; retry shortly") from exc
    return job_id
