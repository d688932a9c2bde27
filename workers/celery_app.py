"""The Celery app: configuration, routes and signals only. Stage logic lives in ``engram.stages``.

Configuration is read from ``Settings`` when Celery first needs it, not at import.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from celery import Celery, signals

from config.settings import Settings, get_settings
from engram.graph.routing import GraphWorkerMisconfigured, owned_shard, route_graph_task
from workers.redis_transport import TRANSPORT

log = logging.getLogger(__name__)

QUEUE_LLM = "llm"
QUEUE_DEFAULT = "default"
# Webhook deliveries have their own workers: a slow receiver never holds a pipeline slot (DESIGN.md #9).
QUEUE_WEBHOOKS = "webhooks"
TASK_ROUTES = {
    # The API's messages: each starts a group of jobs (workers/dispatch.py), in the first stage's queue.
    "engram.dispatch": {"queue": QUEUE_LLM},
    "engram.extract": {"queue": QUEUE_LLM},
    "engram.reconcile": {"queue": QUEUE_LLM},
    "engram.embed": {"queue": QUEUE_DEFAULT},
    "engram.notify": {"queue": QUEUE_DEFAULT},
    "engram.export": {"queue": QUEUE_DEFAULT},
    "engram.vector_upkeep": {"queue": QUEUE_DEFAULT},  # in one process, not in every writer (workers/upkeep.py)
    "engram.webhooks.deliver": {"queue": QUEUE_WEBHOOKS},
    "engram.webhooks.sweep": {"queue": QUEUE_WEBHOOKS},
    "engram.sweep": {"queue": QUEUE_DEFAULT},  # issue #8: re-sends jobs whose message was lost
}
# engram.graph.* go to graph.<n> of the shard they name (DESIGN.md #4); the other tasks by name.
ROUTERS = (route_graph_task, TASK_ROUTES)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's configuration, derived from engram's settings (DESIGN.md #8)."""
    return {
        "broker_url": settings.redis.url,
        # redis:// only: other schemes (rediss, sentinel) keep the transport kombu picks for them.
        "broker_transport": TRANSPORT if settings.redis.url.startswith("redis://") else None,
        # Job state lives in SQL (DESIGN.md #1); Celery keeps no results.
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_routes": ROUTERS,
        "task_default_queue": QUEUE_DEFAULT,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_transport_options": {
            "visibility_timeout": settings.pipeline.visibility_timeout_seconds,
            "global_keyprefix": settings.redis.key_prefix + "celery:",
        },
        "broker_connection_retry_on_startup": True,
        # Fail an enqueue fast when Redis is down, so the API can answer 503 instead of hanging.
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        "broker_connection_timeout": 3,
        # Flower sees every task and its name (sent events are optional: pipeline.task_sent_events).
        "worker_send_task_events": True,
        "task_send_sent_event": settings.pipeline.task_sent_events,
        "task_track_started": True,
        "worker_hijack_root_logger": False,
        # Re-sends webhook deliveries whose message was lost; runs only where `celery beat` runs.
        "beat_schedule": {
            "engram-webhooks-sweep": {"task": "engram.webhooks.sweep", "schedule": 60.0},
            # Issue #8: stuck jobs; beat is optional (`engram sweep --every 30` and worker start do it too).
            "engram-sweep": {"task": "engram.sweep", "schedule": 60.0},
        },
    }


def producer(settings: Settings) -> Celery:
    """A Celery app that only sends tasks, configured from ``settings`` (used by the API)."""
    sender = Celery("engram-producer")
    sender.conf.update(celery_config(settings))
    return sender


app = Celery(
    "engram",
    include=[
        "workers.dispatch",
        "workers.extract",
        "workers.embed",
        "workers.reconcile",
        "workers.notify",
        "workers.export",
        "workers.graph",
        "workers.webhooks",
        "workers.sweeper",  # issue #8
        "workers.upkeep",
    ],
)
# A module path, imported when Celery first needs its configuration: settings are not read at import.
app.config_from_object("workers.celeryconfig")


@signals.worker_init.connect
def _claim_graph_shard(sender: Any = None, **_: Any) -> None:
    """A worker consuming graph.<n> owns shard n: check that it may, and tell its processes which shard."""
    settings = get_settings().graph_store
    selected = sender.app.amqp.queues.consume_from
    queues = list(selected) if selected else [sender.app.conf.task_default_queue]
    try:
        shard = owned_shard(queues, int(sender.concurrency or 1), settings.shard, settings.shards)
    except GraphWorkerMisconfigured as exc:
        # SystemExit passes through Celery's signal dispatch (which logs and swallows Exceptions).
        raise SystemExit(f"engram: refusing to start: {exc}") from exc
    if shard is not None and settings.shard is None:
        os.environ["ENGRAM_GRAPH_STORE__SHARD"] = str(shard)  # inherited by the pool process forked next
        get_settings.cache_clear()
    if shard is not None:
        log.info("graph worker of shard %d (graph.%d)", shard, shard)


@signals.worker_init.connect
def _migrate_before_fork(**_: Any) -> None:
    from workers import runtime

    runtime.container().migrate()
    runtime.reset()  # nothing opened in the parent may cross the fork


def consumed_queues() -> list[str]:
    selected = app.amqp.queues.consume_from
    return list(selected) if selected else [app.conf.task_default_queue]


def _open_process_resources() -> None:
    """What every task of this process needs, loaded once before the first task waits for it."""
    from workers import runtime

    c = runtime.container()
    queues = consumed_queues()
    if QUEUE_LLM in queues and hasattr(c.llm, "warm_up"):
        c.llm.warm_up()  # litellm's import alone takes seconds
    warm_up = getattr(c.embedder, "warm_up", None)
    if warm_up is not None and (QUEUE_LLM in queues or QUEUE_DEFAULT in queues):
        warm_up()  # embed, and reconcile (categories, rewritten memories)
    # An unreachable store or a vector-size mismatch stops the worker now, not on its first job.
    c.vector_store.ping()
    graph = c.settings.graph_store
    if graph.enabled and graph.shard is not None:
        c.graph_store.ping()  # a graph worker opens its shard once, now: fail fast, recover
    gc.freeze()  # the model and libraries loaded above live as long as the process: keep full collections off them


@signals.worker_process_init.connect
def _open_per_process(**_: Any) -> None:
    """Each prefork (or solo) pool process, after fork."""
    from workers import runtime

    runtime.reset()  # nothing of the parent's crosses the fork
    _open_process_resources()


@signals.worker_ready.connect
def _open_thread_pool_process(sender: Any = None, **_: Any) -> None:
    """A thread pool has no pool processes (no worker_process_init): its one process loads here."""
    if type(getattr(sender, "pool", None)).__module__.endswith(".thread"):
        _open_process_resources()


@signals.worker_process_shutdown.connect
def _close_per_process(**_: Any) -> None:
    from workers import runtime

    graph = runtime.container().__dict__.get("graph_store")
    if graph is not None:
        graph.close()  # checkpoint and release the shard file before the process goes
    runtime.reset()


@signals.worker_ready.connect
def _sweep_on_start(**_: Any) -> None:
    """Issue #8: a (re)started worker asks for one sweep, so jobs whose messages died with the previous
    worker (or with Redis) move on without waiting for the periodic sweeper."""
    app.send_task("engram.sweep")


@signals.worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    """Prometheus metrics of this worker on ``ENGRAM_WORKER_METRICS_PORT`` (unset: none).

    A thread-pool worker (the LLM queue's) counts everything in one process. A prefork worker's
    children are only seen when ``PROMETHEUS_MULTIPROC_DIR`` is set for the whole worker.
    """
    import os

    port = os.environ.get("ENGRAM_WORKER_METRICS_PORT")
    if not port:
        return
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(int(port), addr="127.0.0.1", registry=registry)
