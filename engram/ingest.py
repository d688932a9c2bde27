"""Accepting conversations: check limits, record jobs, enqueue their first stage.

The SQL row is written before the message is sent: the row is the truth, the message a hint.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import kombu.exceptions
import redis.exceptions
from pydantic import ValidationError

from config.container import Container
from engram.ids import new_job_id
from engram.sql.jobs import NewJob
from schemas.jobs import JobStatus
from schemas.memories import MemoryCreate

BROKER_ERRORS = (OSError, ConnectionError, kombu.exceptions.OperationalError, redis.exceptions.RedisError)
# Queue depth is read at most this often per process: one Redis call per interval, not per request.
DEPTH_CACHE_SECONDS = 1.0
_depth_cache: dict[str, tuple[float, int]] = {}


class BrokerUnavailable(RuntimeError):
    """The queue could not take the job (answered with 503 and Retry-After)."""


class LimitExceeded(ValueError):
    """A request is larger than the deployment allows (answered with 413)."""


class Backpressure(RuntimeError):
    """The pipeline is behind: the first stage's queue is past its limit (answered with 429)."""

    def __init__(self, depth: int, limit: int, retry_after_seconds: int) -> None:
        super().__init__(f"ingest is paused: {depth} jobs are waiting (limit {limit}); retry later")
        self.retry_after_seconds = retry_after_seconds


@dataclass
class BatchAccepted:
    batch_id: str
    accepted: int
    duplicates: int
    rejected: list[dict[str, Any]] = field(default_factory=list)
    event_ids: list[str | None] = field(default_factory=list)  # per input item; None where rejected


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


def queue_depth(c: Container, queue: str) -> int:
    now = time.monotonic()
    cached = _depth_cache.get(queue)
    if cached is not None and cached[0] > now:
        return cached[1]
    depth = int(c.redis.llen(c.settings.redis.key_prefix + "celery:" + queue))
    _depth_cache[queue] = (now + DEPTH_CACHE_SECONDS, depth)
    return depth


def check_backpressure(c: Container, incoming: int = 1) -> None:
    """Refuse new work while the first stage's queue is past its limit, instead of growing Redis."""
    limit = c.settings.api.max_queue_depth
    if limit <= 0:
        return
    try:
        depth = queue_depth(c, "llm")
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable("the job queue is unavailable; retry shortly") from exc
    if depth + incoming > limit:
        raise Backpressure(depth, limit, c.settings.api.backpressure_retry_after_seconds)


def _job_for(request: MemoryCreate, key: str | None, index: int | None = None) -> NewJob:
    body = request.model_dump(mode="json", exclude_none=True)
    scope = {k: getattr(request, k) or "" for k in ("user_id", "agent_id", "run_id")}
    return NewJob(new_job_id(), body, scope, idempotency_key=key, batch_index=index)


def _enqueue_all(c: Container, job_ids: Sequence[str], enqueue: Callable[[str], None]) -> None:
    for position, job_id in enumerate(job_ids):
        try:
            enqueue(job_id)
        except BROKER_ERRORS as exc:
            _abandon(c, job_ids[position:], f"could not enqueue: {exc!s:.300}")
            raise BrokerUnavailable("the job queue is unavailable; retry shortly") from exc


def _abandon(c: Container, job_ids: Sequence[str], reason: str) -> None:
    """Jobs the client was told were refused: never run them later, and free their idempotency keys
    for the client's retry."""
    for job_id in job_ids:
        c.jobs.finish(job_id, JobStatus.FAILED, reason)
        c.jobs.release_idempotency_key(job_id)


def submit(
    c: Container,
    project_id: str,
    request: MemoryCreate,
    enqueue: Callable[[str], None],
    idempotency_key: str | None = None,
) -> str:
    """Record the job (PENDING) and enqueue it; with a key already used, the earlier job's id."""
    check_limits(request, c)
    job = _job_for(request, idempotency_key)
    holder = c.jobs.create_many(project_id, [job])[job.id]
    if holder != job.id:
        return holder  # the same request was accepted before: nothing new to run
    try:
        check_backpressure(c)
    except (Backpressure, BrokerUnavailable) as refused:
        _abandon(c, [job.id], str(refused))
        raise
    _enqueue_all(c, [job.id], enqueue)
    return job.id


def submit_batch(c: Container, project_id: str, items: Sequence[Any], enqueue: Callable[[str], None]) -> BatchAccepted:
    """Many conversations at once. Invalid items are rejected with their reason; the rest run."""
    limit = c.settings.api.max_batch_conversations
    if len(items) > limit:
        raise LimitExceeded(f"{len(items)} conversations in one batch; at most {limit}")
    check_backpressure(c, incoming=len(items))
    batch_id = str(uuid.uuid4())
    jobs: list[NewJob] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise ValueError("each conversation must be a JSON object")
            key = item.get("idempotency_key")
            if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 200):
                raise ValueError("idempotency_key must be a string of 1 to 200 characters")
            request = MemoryCreate.model_validate({k: v for k, v in item.items() if k != "idempotency_key"})
            check_limits(request, c)
            jobs.append(_job_for(request, key, index))
        except (ValidationError, ValueError) as exc:
            rejected.append({"index": index, "error": _reason(exc)})
    c.batches.create(batch_id, project_id, len(items), rejected)
    holders = c.jobs.create_many(project_id, jobs, batch_id=batch_id)
    fresh = [j.id for j in jobs if holders[j.id] == j.id]
    _enqueue_all(c, fresh, enqueue)
    event_ids: list[str | None] = [None] * len(items)
    for job in jobs:
        event_ids[job.batch_index or 0] = holders[job.id]
    return BatchAccepted(batch_id, len(fresh), len(jobs) - len(fresh), rejected, event_ids)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())[:1000]
    return str(exc)[:1000]
