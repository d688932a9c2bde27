"""The composition root: builds every provider from ``Settings``, lazily, once per process.

Nothing connects at import. Workers build their container after fork (``worker_process_init``);
the API builds it in its lifespan.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings
from engram import plugins
from engram.graph.port import GraphStore
from engram.llm.ratelimit import RateLimiter
from engram.locks import ScopeLocks
from engram.ports import LLM, Embedder, VectorStore
from engram.sql.batches import BatchStore
from engram.sql.engine import make_engine
from engram.sql.exports import ExportStore
from engram.sql.feedback import FeedbackStore
from engram.sql.history import HistoryStore
from engram.sql.jobs import JobStore
from engram.sql.tenancy import TenancyStore
from engram.webhooks.store import WebhookStore


def _build(kind: str, name: str, fields: dict[str, Any]) -> Any:
    cls = plugins.load(kind, name)
    config_model = getattr(cls, "config_model", None)
    if config_model is None:
        return cls()
    # Only the fields the provider's config declares: each provider has its own typed config.
    known = {k: v for k, v in fields.items() if k in config_model.model_fields and v is not None}
    return cls(config_model.model_validate(known))


# Set (with the interval as expiry) by whichever process last asked a worker for the store's upkeep.
UPKEEP_ASKED_KEY = "vector-upkeep:asked"


class Container:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # How this process hands webhook deliveries to the webhooks queue (the API sets its producer;
        # without one, deliveries wait for the sweeper).
        self.deliveries_sender: Callable[[list[tuple[str, int]]], None] | None = None
        # How this process asks a worker for the vector store's upkeep (the API and the workers set one;
        # without one, the store runs it after its own writes).
        self.upkeep_sender: Callable[[], None] | None = None
        # Threads of the embedded store's async runtime in this process (None: one per core); the workers set
        # ``vector_store.worker_runtime_threads`` before first use.
        self.store_runtime_threads: int | None = None
        # Threads of the local embedder's runtime in this process (None: its own config, one by default); the
        # API sets ``embedder.api_threads`` in ``serve_searches``.
        self.embedder_threads: int | None = None

    @cached_property
    def llm(self) -> LLM:
        s = self.settings.llm
        fields = {
            "model": s.model,
            "api_base": s.api_base,
            "api_key": s.api_key.get_secret_value() if s.api_key else None,
            "timeout_seconds": s.timeout_seconds,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            **s.config,
        }
        llm = _build("llm", s.provider, fields)
        if hasattr(llm, "limiter") and (s.requests_per_minute or s.tokens_per_minute):
            llm.limiter = RateLimiter(
                self.redis, f"{self.settings.redis.key_prefix}ratelimit:{s.provider}:{s.model}",
                requests_per_minute=s.requests_per_minute, tokens_per_minute=s.tokens_per_minute,
            )
        return llm  # type: ignore[no-any-return]

    @cached_property
    def embedder(self) -> Embedder:
        s = self.settings.embedder
        fields = {
            "model": s.model,
            "dimensions": s.dimensions,
            "api_base": s.api_base,
            "api_key": s.api_key.get_secret_value() if s.api_key else None,
            "timeout_seconds": s.timeout_seconds,
            "batch_size": s.batch_size,
            **s.config,
        }
        if self.embedder_threads is not None:
            fields["threads"] = self.embedder_threads
        return _build("embedder", s.provider, fields)  # type: ignore[no-any-return]

    @cached_property
    def vector_store(self) -> VectorStore:
        s = self.settings.vector_store
        fields = {
            "path": s.path,
            "table": s.table,
            "dimensions": self.settings.embedder.dimensions,
            "runtime_threads": self.store_runtime_threads,
            **s.config,
        }
        # Each store takes the fields its config declares: search defaults for all, connection for Weaviate.
        weaviate = s.weaviate.model_dump(exclude={"api_key"})
        weaviate["api_key"] = s.weaviate.api_key.get_secret_value() if s.weaviate.api_key else None
        fields = {"search_mode": s.search_mode, "hybrid_alpha": s.hybrid_alpha, **weaviate, **fields}
        store = _build("vector_store", s.provider, fields)
        hand_off = getattr(store, "hand_off_upkeep", None)
        if hand_off is not None:
            hand_off(self._hand_off_upkeep)
        return store  # type: ignore[no-any-return]

    def _hand_off_upkeep(self) -> bool:
        """Ask a worker for the store's upkeep, at most once per ``upkeep_interval_seconds`` across every
        process (a Redis key with that expiry); False when this process has no way to ask."""
        if self.upkeep_sender is None:
            return False
        interval_ms = max(1, int(self.settings.vector_store.upkeep_interval_seconds * 1000))  # Redis refuses px=0
        if self.redis.set(self.settings.redis.key_prefix + UPKEEP_ASKED_KEY, "1", nx=True, px=interval_ms):
            self.upkeep_sender()
        return True

    @cached_property
    def engine(self) -> Engine:
        s = self.settings.sql
        return make_engine(s.url, busy_timeout_ms=s.busy_timeout_ms, pool_size=s.pool_size)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.engine)

    @cached_property
    def history(self) -> HistoryStore:
        return HistoryStore(self.engine)

    @cached_property
    def tenancy(self) -> TenancyStore:
        return TenancyStore(self.engine)

    @cached_property
    def batches(self) -> BatchStore:
        return BatchStore(self.engine)

    @cached_property
    def feedback(self) -> FeedbackStore:
        return FeedbackStore(self.engine)

    @cached_property
    def exports(self) -> ExportStore:
        return ExportStore(self.engine)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis.url, socket_timeout=5, socket_connect_timeout=5)

    @cached_property
    def locks(self) -> ScopeLocks:
        return ScopeLocks(
            self.redis,
            key_prefix=self.settings.redis.key_prefix + "lock:",
            ttl_seconds=self.settings.pipeline.lock_ttl_seconds,
        )

    def migrate(self) -> None:
        """Bring the SQL schema to head; serialised across processes that start together."""
        from engram.sql.migrate import upgrade

        with self.redis.lock(self.settings.redis.key_prefix + "migrate", timeout=120, blocking_timeout=120):
            upgrade(self.engine)

    def serve_searches(self) -> None:
        """Set this process up as the one answering searches (the API): its embedder on every core, since a
        query's embedding is latency rather than throughput, and the embedded store's searches through
        pylance's own query path (~2.5 ms less per query than lancedb's; engram.vectorstores.lance_native),
        which workers don't load. Call before the embedder's first use."""
        self.embedder_threads = self.settings.embedder.api_threads or os.cpu_count() or 1
        search_natively = getattr(self.vector_store, "search_with_pylance", None)
        if search_natively is not None:
            search_natively()

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "redis" in self.__dict__:
            self.redis.close()
        close_store = getattr(self.__dict__.get("vector_store"), "close", None)
        if close_store is not None:
            close_store()  # e.g. Weaviate's gRPC client: one per process, released at shutdown

    @cached_property
    def graph_store(self) -> GraphStore:
        """This process's graph shard, opened on first use. Only the shard's graph worker has one (DESIGN.md #4)."""
        from engram.graph.routing import GraphNotOwned  # late: the graph package is only for graph workers

        s = self.settings.graph_store
        if s.provider is None:
            raise GraphNotOwned("graph memory is not enabled (set ENGRAM_GRAPH_STORE__PROVIDER=kuzu)")
        if s.shard is None:
            raise GraphNotOwned("this process owns no graph shard; only a graph worker (-Q graph.<n> -c 1) opens one")
        fields = {
            "path": s.path,
            "shard": s.shard,
            "backend": s.backend,
            "dimensions": self.settings.embedder.dimensions,
            **s.config,
        }
        return _build("graph_store", s.provider, fields)  # type: ignore[no-any-return]

    @cached_property
    def webhooks(self) -> WebhookStore:
        """Webhooks, their deliveries and attempts (DESIGN.md #9)."""
        return WebhookStore(self.engine)
