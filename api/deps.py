"""Dependencies shared by the routers, as ``Annotated`` aliases so handlers stay short."""

from __future__ import annotations

import time
from typing import Annotated

from celery import Celery
from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from config.container import Container
from engram.admission import GroupCommitter
from engram.ingest import Dispatch
from engram.sql.jobs import NewJob
from engram.sql.tenancy import Principal, hash_key

# A resolved key is trusted this long without asking SQL again: one lookup per key per window
# instead of one per request. A revoked key stops working within this window.
KEY_CACHE_SECONDS = 10.0
_key_cache: dict[str, tuple[float, Principal]] = {}


# The dependencies are ``async def``: FastAPI runs a plain ``def`` dependency on its thread pool, a hop
# that cost more than the whole add (bench/ py-spy: 11 % of the API's time under load).


async def get_container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


def presented_key(request: Request) -> str | None:
    """The API key from ``Authorization: Token|Bearer <key>`` (Mem0's client sends Token) or ``X-API-Key``."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer", "api-key") and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


async def get_principal(request: Request, c: Annotated[Container, Depends(get_container)]) -> Principal:
    key = presented_key(request)
    challenge = {"WWW-Authenticate": 'Token realm="engram"'}
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing API key: send 'Authorization: Token <key>'", headers=challenge
        )
    digest = hash_key(key)
    cached = _key_cache.get(digest)
    if cached is not None and cached[0] > time.monotonic():
        principal = cached[1]
    else:
        resolved = await run_in_threadpool(c.tenancy.resolve, key)  # SQL, once per key per window
        if resolved is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers=challenge)
        principal = resolved
        _key_cache[digest] = (time.monotonic() + KEY_CACHE_SECONDS, principal)
    request.app.state.key_rate_limiter.check(principal.key_id)
    return principal


async def get_project_id(principal: Annotated[Principal, Depends(get_principal)]) -> str:
    """Everything a request touches is scoped to its key's project."""
    return principal.project_id


async def get_sender(request: Request) -> Celery:
    """The API's Celery producer (sends tasks; never runs them)."""
    return request.app.state.producer  # type: ignore[no-any-return]


async def get_dispatch(request: Request) -> Dispatch:
    """Starts a group of accepted jobs: one ``engram.dispatch`` message naming them all."""
    return request.app.state.dispatch  # type: ignore[no-any-return]


async def get_admission(request: Request) -> GroupCommitter[tuple[str, NewJob], str]:
    """Single adds, committed and dispatched in groups with the requests that arrive beside them."""
    return request.app.state.admission  # type: ignore[no-any-return]


ContainerDep = Annotated[Container, Depends(get_container)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ProjectDep = Annotated[str, Depends(get_project_id)]
SenderDep = Annotated[Celery, Depends(get_sender)]
DispatchDep = Annotated[Dispatch, Depends(get_dispatch)]
AdmissionDep = Annotated[GroupCommitter[tuple[str, NewJob], str], Depends(get_admission)]
