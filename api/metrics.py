"""``GET /metrics`` (Prometheus) and the request counters behind it.

Besides this process's counters, the scrape reads the shared truth: jobs by state from SQL and
queue depths from Redis, so one scrape of any API replica shows the whole pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engram import metrics
from engram.sql import tables

router = APIRouter(tags=["metrics"])
QUEUES = ("llm", "default", "webhooks")


class PipelineCollector(Collector):
    """Jobs by state and queue depths, read when Prometheus scrapes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        c = getattr(self.app.state, "container", None)
        if c is None:
            return
        jobs = GaugeMetricFamily("engram_jobs", "Jobs by state", labels=["status"])
        with c.engine.connect() as conn:
            query = select(tables.jobs.c.status, func.count()).group_by(tables.jobs.c.status)
            for status, count in conn.execute(query):
                jobs.add_metric([status], count)
        yield jobs
        depth = GaugeMetricFamily("engram_queue_depth", "Messages waiting per queue", labels=["queue"])
        for queue in QUEUES:
            depth.add_metric([queue], c.redis.llen(c.settings.redis.key_prefix + "celery:" + queue))
        yield depth


def install(app: Any) -> None:
    """The pipeline gauges go to a registry of this app's own (tests build many apps in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(app))
    app.state.metrics_registry = registry


@router.get("/metrics", include_in_schema=False)
def scrape(request: Request) -> Response:
    body = generate_latest(REGISTRY) + generate_latest(request.app.state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Counts and times requests by route template (never by raw path: ids would explode cardinality)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)
