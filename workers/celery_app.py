"""The Celery app: configuration, routes and signals only. Stage logic lives in ``engram.stages``.

Configuration is read from ``Settings`` when Celery first needs it, not at import.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from config.settings import Settings

QUEUE_LLM = "llm"
QUEUE_DEFAULT = "default"
TASK_ROUTES = {
    "engram.extract": {"queue": QUEUE_LLM},
    "engram.reconcile": {"queue": QUEUE_LLM},
    "engram.embed": {"queue": QUEUE_DEFAULT},
    "engram.notify": {"queue": QUEUE_DEFAULT},
    "engram.export": {"queue": QUEUE_DEFAULT},
}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's configuration, derived from engram's settings (DESIGN.md #8)."""
    return {
        "broker_url": settings.redis.url,
        # Job state lives in SQL (DESIGN.md #1); Celery keeps no results.
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_routes": TASK_ROUTES,
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
        # Flower sees every task and its name.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "worker_hijack_root_logger": False,
    }


def producer(settings: Settings) -> Celery:
    """A Celery app that only sends tasks, configured from ``settings`` (used by the API)."""
    sender = Celery("engram-producer")
    sender.conf.update(celery_config(settings))
    return sender


app = Celery(
    "engram",
    include=["workers.extract", "workers.embed", "workers.reconcile", "workers.notify", "workers.export"],
)
# A module path, imported when Celery first needs its configuration: settings are not read at import.
app.config_from_object("workers.celeryconfig")


@signals.worker_init.connect
def _migrate_before_fork(**_: Any) -> None:
    from workers import runtime

    runtime.container().migrate()
    runtime.reset()  # nothing opened in the parent may cross the fork


@signals.worker_process_init.connect
def _open_per_process(**_: Any) -> None:
    from workers import runtime

    runtime.reset()
    warm_up = getattr(runtime.container().embedder, "warm_up", None)
    if warm_up is not None:
        warm_up()  # load the model once per process, before the first task waits for it


@signals.worker_process_shutdown.connect
def _close_per_process(**_: Any) -> None:
    from workers import runtime

    runtime.reset()
