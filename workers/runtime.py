"""The worker process's container: built after fork, on first use, once."""

from __future__ import annotations

from config.container import Container
from config.settings import get_settings

_container: Container | None = None


def container() -> Container:
    global _container
    if _container is None:
        _container = Container(get_settings())
    return _container


def reset() -> None:
    global _container
    if _container is not None:
        _container.close()
    _container = None
