"""The FastAPI app: collects the routers. ``uvicorn --factory api.main:create_app``."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

from celery import Celery
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from api import errors, metrics
from api.limits import BodySizeLimit
from api.ratelimit import KeyRateLimiter
from api.routers import (
    account,
    batch,
    batches,
    entities,
    event_stream,
    events,
    exports,
    feedback,
    graph,
    health,
    memories,
    memories_v2,
    unsupported,
    webhooks,
)
from config.container import Container
from config.settings import Settings, get_settings
from engram import ingest
from engram.admission import GroupCommitter
from engram.ingest import BROKER_ERRORS
from engram.webhooks import DELIVER_TASK
from workers.celery_app import producer
from workers.dispatch import DISPATCH_TASK
from workers.upkeep import UPKEEP_TASK

log = logging.getLogger(__name__)


def send_deliveries(sender: Celery, queued: list[tuple[str, int]]) -> None:
    """Webhook deliveries of direct edits, handed to the webhooks queue once their rows committed."""
    try:
        for delivery_id, token in queued:
            sender.send_task(DELIVER_TASK, args=[delivery_id], kwargs={"expected_attempts": token})
    except BROKER_ERRORS as exc:  # the rows are durable and PENDING; the sweeper sends them
        log.warning("could not enqueue %d webhook deliveries: %s", len(queued), exc)


def dispatch(sender: Celery, job_ids: Sequence[str]) -> None:
    """Start a group of accepted jobs: one message, fanned out by the worker (workers/dispatch.py)."""
    sender.send_task(DISPATCH_TASK, args=[list(job_ids)])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = Container(settings)
        if container.settings.sql.auto_migrate:
            await run_in_threadpool(container.migrate)
        # Fail at start, with a clear message, on an unreachable store or a vector-size mismatch.
        await run_in_threadpool(container.vector_store.ping)
        container.serve_searches()
        app.state.container = container
        app.state.key_rate_limiter = KeyRateLimiter(
            settings.api.requests_per_second_per_key, settings.api.request_burst_per_key
        )
        app.state.producer = producer(settings)
        container.deliveries_sender = partial(send_deliveries, app.state.producer)
        container.upkeep_sender = partial(app.state.producer.send_task, UPKEEP_TASK)
        app.state.dispatch = partial(dispatch, app.state.producer)
        app.state.admission = GroupCommitter(lambda items: ingest.admit_group(container, items, app.state.dispatch))
        # What start-up loaded stays for the life of the process: keep the collector off it. A full collection
        # over it stalled every request in flight for ~170 ms (bench/: ingest p99 190 -> 43 ms with one worker).
        gc.freeze()
        yield
        app.state.producer.close()
        container.close()

    app = FastAPI(
        title="engram",
        version="0.1.0",
        description="Long-term memory for AI agents: a Mem0-compatible API over an async pipeline.",
        lifespan=lifespan,
    )
    errors.install(app)
    metrics.install(app)
    app.include_router(metrics.router)
    routers = (
        account,
        memories,
        memories_v2,
        batches,
        events,
        event_stream,
        entities,
        batch,
        feedback,
        exports,
        graph,
        webhooks,
        unsupported,
        health,
    )
    for module in routers:
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.api.max_body_bytes)  # type: ignore[arg-type]
    app.add_middleware(metrics.RequestMetrics)  # type: ignore[arg-type]
    return app
