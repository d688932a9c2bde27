"""kombu's Redis transport, with one client object per channel instead of one per command.

kombu 5.7 builds a new ``redis.Redis`` for every publish, every unacked-message bookkeeping step
and every ack (``Channel.conn_or_acquire``); redis-py 8 spends ~0.1 ms of Python building one (its
response-callback table). Task events, acks and hand-ons make that ~10-18% of a worker's Python
time (py-spy, bench/ ingest). The clients all share the channel's connection pool, so one client
does the same: it holds no connection itself, and redis-py clients are safe to share across
threads. The consuming side (BRPOP, pub/sub) is left as kombu has it.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = "workers.redis_transport:Transport"


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    _shared: tuple[Any, Any] | None = None  # (pool, client): rebuilt when kombu replaces the pool

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        shared = self._shared
        if shared is None or shared[0] is not pool:
            shared = self._shared = (pool, super()._create_client())
        return shared[1]


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
