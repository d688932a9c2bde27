"""Retries inside the SQL store layer for errors that pass: SQLite's "database is locked" (after its busy
timeout) and PostgreSQL connection loss, serialization failures and deadlocks.

Only statements that are safe to run twice are wrapped (reads, inserts that ignore existing keys,
updates that set values or are conditional). When a connection dies during COMMIT nobody knows
whether it landed; a wrapped method must give the same answer either way (see ``complete_stage``).
Anything else is raised at once: a missing table or a bad query does not get better by waiting.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

SQL_RETRY_ATTEMPTS = 5
SQL_RETRY_BASE_SECONDS = 0.05
SQL_RETRY_MAX_SECONDS = 1.0
SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy")


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same statements again can succeed."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    if exc.connection_invalidated:  # SQLAlchemy saw a disconnect; the pool drops that connection
        return True
    orig = exc.orig
    if type(orig).__module__.startswith("sqlite3"):
        # "unable to open database file", "no such table": not worth waiting for.
        return any(marker in str(orig).lower() for marker in SQLITE_TRANSIENT)
    # psycopg's OperationalError: connection refused or lost, serialization failure, deadlock, admin shutdown.
    return True


def backoff_seconds(retry: int) -> float:
    """Exponential with jitter in [50%, 100%] of the step: 0.05, 0.1, 0.2 ... up to 1 s."""
    return min(SQL_RETRY_MAX_SECONDS, SQL_RETRY_BASE_SECONDS * 2**retry) * random.uniform(0.5, 1.0)


def retrying(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` up to ``SQL_RETRY_ATTEMPTS`` times while it fails with a transient SQL error."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for retry in range(SQL_RETRY_ATTEMPTS):
            try:
                return fn(*args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                if retry == SQL_RETRY_ATTEMPTS - 1 or not is_transient(exc):
                    raise
                wait = backoff_seconds(retry)
                log.info("%s: transient SQL error (%s); retry %d in %.2fs", fn.__qualname__,
                         str(exc.orig).splitlines()[0][:200], retry + 1, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    return wrapper
