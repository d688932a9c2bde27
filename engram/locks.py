"""Per-scope locks in Redis: reconcile+apply for one scope runs in one place at a time.

Two conversations of the same user processed in parallel must not both ADD the same fact
(mem0ai/mem0#6515). Scopes never share a lock, so different users proceed in parallel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import redis
from redis.lock import Lock

from engram.errors import ScopeBusy
from engram.scope import Scope


class ScopeLocks:
    def __init__(self, client: redis.Redis, *, key_prefix: str, ttl_seconds: float) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.ttl_seconds = ttl_seconds

    def lock(self, scope: Scope) -> Lock:
        return self.client.lock(self.key_prefix + scope.lock_key(), timeout=self.ttl_seconds, thread_local=False)

    @contextmanager
    def hold(self, scope: Scope, *, wait_seconds: float = 0.0) -> Iterator[Lock]:
        """Hold the scope's lock, or raise ScopeBusy if it stays busy for ``wait_seconds``.

        Workers wait briefly (``pipeline.lock_wait_seconds``), then retry the task with a countdown
        rather than hold a slot longer; the API waits a little for direct edits. Raises ``ScopeBusy``.
        """
        lock = self.lock(scope)
        acquired = lock.acquire(blocking=wait_seconds > 0, blocking_timeout=wait_seconds or None)
        if not acquired:
            raise ScopeBusy(f"scope {scope.lock_key()} is busy")
        try:
            yield lock
        finally:
            # LockError: it expired while we held it (the TTL is too short for this work). Nothing to
            # undo: the writes are idempotent and the next holder re-reads the store.
            with suppress(redis.exceptions.LockError):
                lock.release()
