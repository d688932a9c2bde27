"""Map domain errors to clear 4xx answers; an unexpected error is a JSON 500, never HTML."""

from __future__ import annotations

import logging

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.ratelimit import RequestRateLimited
from engram.errors import ImmutableMemoryError, NotFoundError, ScopeBusy, TransientError
from engram.filters import FilterError
from engram.ingest import Backpressure, BrokerUnavailable, LimitExceeded

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = "5"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": message}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(ValidationError)
    async def _invalid(_: Request, exc: ValidationError) -> JSONResponse:
        # Models built inside a handler (e.g. from query parameters) fail like request bodies do.
        details = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"error": "invalid parameters", "detail": details}, status_code=422)

    @app.exception_handler(FilterError)
    async def _bad_filter(_: Request, exc: FilterError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(ImmutableMemoryError)
    async def _immutable(_: Request, exc: ImmutableMemoryError) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(LimitExceeded)
    async def _too_large(_: Request, exc: LimitExceeded) -> JSONResponse:
        return _error(413, str(exc))

    @app.exception_handler(BrokerUnavailable)
    async def _broker_down(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": RETRY_AFTER_SECONDS})

    @app.exception_handler(Backpressure)
    async def _behind(_: Request, exc: Backpressure) -> JSONResponse:
        return _error(429, str(exc), {"Retry-After": str(exc.retry_after_seconds)})

    @app.exception_handler(ScopeBusy)
    async def _busy(_: Request, exc: ScopeBusy) -> JSONResponse:
        return _error(
            409, "the memory's scope is being updated by a job; retry shortly", {"Retry-After": RETRY_AFTER_SECONDS}
        )

    @app.exception_handler(redis.exceptions.RedisError)
    @app.exception_handler(kombu.exceptions.OperationalError)
    async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unavailable: %s", exc)
        return _error(
            503, "a backing service (Redis) is unavailable; retry shortly", {"Retry-After": RETRY_AFTER_SECONDS}
        )

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    @app.exception_handler(sqlalchemy.exc.InterfaceError)
    async def _sql_down(_: Request, exc: Exception) -> JSONResponse:
        # Lost connections and SQLite's "database is locked" after its busy timeout: retryable.
        log.warning("SQL unavailable: %s", exc)
        return _error(503, "the database is busy or unavailable; retry shortly", {"Retry-After": RETRY_AFTER_SECONDS})

    @app.exception_handler(TransientError)
    async def _store_down(_: Request, exc: TransientError) -> JSONResponse:
        # A backing store (e.g. Weaviate) failed in a way worth retrying: say so, never 500.
        log.warning("transient failure: %s", exc)
        retry = str(int(exc.retry_after_seconds)) if exc.retry_after_seconds else RETRY_AFTER_SECONDS
        return _error(503, "a backing store is unavailable; retry shortly", {"Retry-After": retry})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Raised by handlers and dependencies (401, 400 ...): the same body shape as every other error.
        if isinstance(exc.detail, str):
            return _error(exc.status_code, exc.detail, dict(exc.headers or {}))
        return JSONResponse({"error": "request refused", "detail": exc.detail}, exc.status_code, exc.headers)

    @app.exception_handler(RequestRateLimited)
    async def _too_many(_: Request, exc: RequestRateLimited) -> JSONResponse:
        return _error(429, str(exc), {"Retry-After": str(exc.retry_after_seconds)})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal error")
