"""The worker process's container: built after fork, on first use, once."""

from __future__ import annotations

from config.container import Container
from config.settings import get_settings

_container: Container | None = None


def container() -> Container:
    global _container
    if _container is None:
        from workers.upkeep import send_upkeep  # the task module imports this one

        _container = Container(get_settings())
        _container.upkeep_sender = send_upkeep  # the store's upkeep runs on one worker (workers/upkeep.py)
        _container.store_runtime_threads = _container.settings.vector_store.worker_runtime_threads or None
    return _container


def reset() -> None:
    global _container
    if _container is not None:
        _container.close()
    _container = None
