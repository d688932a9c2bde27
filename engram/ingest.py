"""Accepting conversations: check limits, record jobs, start their first stage.

The SQL row is written before the message is sent: the row is the truth, the message a hint. Jobs
accepted together go in one transaction and one ``engram.dispatch`` message that names them all
(the worker fans it out to one ``engram.extract`` each): a Celery publish costs more than the job
row (bench/: ~1 ms against ~0.1 ms per row in a group), so the API publishes once per group.
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
from schemas.memories import MemoryCreate

BROKER_ERRORS = (OSError, ConnectionError, kombu.exceptions.OperationalError, redis.exceptions.RedisError)
# Jobs waiting are counted at most this often per process: one SQL count per interval, not per request.
DEPTH_CACHE_SECONDS = 1.0
_depth_cache: dict[int, tuple[float, int]] = {}
# Job ids per dispatch message: ~40 bytes each, so a message stays small however large the batch.
DISPATCH_IDS_PER_MESSAGE = 250
# Sends one message that starts the first stage of each of these jobs (``engram.dispatch``).
Dispatch = Callable[[Sequence[str]], None]


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


def jobs_waiting(c: Container) -> int:
    """Jobs accepted and not yet started (PENDING), from the SQL truth: however the messages are grouped,
    whichever queue they wait in, and whether or not Redis still holds them."""
    now = time.monotonic()
    cached = _depth_cache.get(id(c))
    if cached is not None and cached[0] > now:
        return cached[1]
    depth = c.jobs.count_waiting()
    _depth_cache[id(c)] = (now + DEPTH_CACHE_SECONDS, depth)
    return depth


def check_backpressure(c: Container, incoming: int = 1) -> None:
    """Refuse new work while too many jobs wait for their first stage, instead of growing the backlog."""
    limit = c.settings.api.max_queue_depth
    if limit <= 0:
        return
    depth = jobs_waiting(c)
    if depth + incoming > limit:
        raise Backpressure(depth, limit, c.settings.api.backpressure_retry_after_seconds)


def _job_for(request: MemoryCreate, key: str | None, index: int | None = None) -> NewJob:
    body = request.model_dump(mode="json", exclude_none=True)
    scope = {k: getattr(request, k) or "" for k in ("user_id", "agent_id", "run_id")}
    return NewJob(new_job_id(), body, scope, idempotency_key=key, batch_index=index)


def dispatch_all(c: Container, job_ids: Sequence[str], dispatch: Dispatch) -> None:
    """Start ``job_ids``, a message per ``DISPATCH_IDS_PER_MESSAGE``; if the broker refuses, the jobs not
    sent are failed (the client is told so) and their idempotency keys freed."""
    for start in range(0, len(job_ids), DISPATCH_IDS_PER_MESSAGE):
        try:
            dispatch(job_ids[start : start + DISPATCH_IDS_PER_MESSAGE])
        except BROKER_ERRORS as exc:
            c.jobs.abandon(job_ids[start:], f"could not enqueue: {exc!s:.300}")
            raise BrokerUnavailable("the job queue is unavailable; retry shortly") from exc


def admit(c: Container, project_id: str, jobs: Sequence[NewJob], dispatch: Dispatch, batch_id: str | None = None
          ) -> dict[str, str]:
    """Record ``jobs`` (PENDING) in one transaction and start them. Returns each job's id, or the id of the
    earlier job that holds its idempotency key (nothing new runs for those). Raises ``Backpressure`` or
    ``BrokerUnavailable``; the new jobs are then failed, never run later."""
    holders = c.jobs.create_many(project_id, jobs, batch_id=batch_id)
    fresh = [j.id for j in jobs if holders[j.id] == j.id]
    if not fresh:
        return holders
    try:
        check_backpressure(c, incoming=len(fresh))
    except Backpressure as refused:
        c.jobs.abandon(fresh, str(refused))
        raise
    dispatch_all(c, fresh, dispatch)
    return holders


def new_job(c: Container, request: MemoryCreate, idempotency_key: str | None = None) -> NewJob:
    """The job for one add, once it passed the deployment's limits (``LimitExceeded`` otherwise)."""
    check_limits(request, c)
    return _job_for(request, idempotency_key)


def submit(
    c: Container,
    project_id: str,
    request: MemoryCreate,
    dispatch: Dispatch,
    idempotency_key: str | None = None,
) -> str:
    """Record one job and start it; with a key already used, the earlier job's id."""
    job = new_job(c, request, idempotency_key)
    return admit(c, project_id, [job], dispatch)[job.id]


def admit_group(c: Container, items: Sequence[tuple[str, NewJob]], dispatch: Dispatch) -> list[str | Exception]:
    """``admit`` for the jobs of many requests at once (``engram.admission``): one transaction and one
    message per project. Each item's answer is its job id (or its key holder's), or what refused it."""
    by_project: dict[str, list[NewJob]] = {}
    for project_id, job in items:
        by_project.setdefault(project_id, []).append(job)
    answers: dict[str, str | Exception] = {}
    for project_id, jobs in by_project.items():
        try:
            answers.update(admit(c, project_id, jobs, dispatch))
        except Exception as exc:  # not swallowed: each request of this project raises it (429, 503 ...)
            answers.update({job.id: exc for job in jobs})
    return [answers[job.id] for _, job in items]


def submit_batch(c: Container, project_id: str, items: Sequence[Any], dispatch: Dispatch) -> BatchAccepted:
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
    dispatch_all(c, fresh, dispatch)
    event_ids: list[str | None] = [None] * len(items)
    for job in jobs:
        event_ids[job.batch_index or 0] = holders[job.id]
    return BatchAccepted(batch_id, len(fresh), len(jobs) - len(fresh), rejected, event_ids)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())[:1000]
    return str(exc)[:1000]
