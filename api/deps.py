"""Dependencies shared by the routers, as ``Annotated`` aliases so handlers stay short."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from config.container import Container

DEFAULT_PROJECT_ID = "default"


def get_container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


def get_enqueue(request: Request) -> Callable[[str], None]:
    """Sends a job's first stage to the broker."""
    sender = request.app.state.producer

    def enqueue(job_id: str) -> None:
        sender.send_task("engram.extract", args=[job_id])

    return enqueue


def get_project_id() -> str:
    """The caller's project. One project until API keys arrive (they resolve it from the key)."""
    return DEFAULT_PROJECT_ID


ContainerDep = Annotated[Container, Depends(get_container)]
ProjectDep = Annotated[str, Depends(get_project_id)]
EnqueueDep = Annotated[Callable[[str], None], Depends(get_enqueue)]
