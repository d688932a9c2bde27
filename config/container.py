"""The composition root: builds every provider from ``Settings``, lazily, once per process.

Nothing connects at import. Workers build their container after fork (``worker_process_init``);
the API builds it in its lifespan.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings
from engram import plugins
from engram.locks import ScopeLocks
from engram.ports import LLM, Embedder, VectorStore
from engram.sql.batches import BatchStore
from engram.sql.engine import make_engine
from engram.sql.exports import ExportStore
from engram.sql.feedback import FeedbackStore
from engram.sql.history import HistoryStore
from engram.sql.jobs import JobStore
from engram.sql.tenancy import TenancyStore


def _build(kind: str, name: str, fields: dict[str, Any]) -> Any:
    cls = plugins.load(kind, name)
    config_model = getattr(cls, "config_model", None)
    if config_model is None:
        return cls()
    # Only the fields the provider's config declares: each provider has its own typed config.
    known = {k: v for k, v in fields.items() if k in config_model.model_fields and v is not None}
    return cls(config_model.model_validate(known))


class Container:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def llm(self) -> LLM:
        s = self.settings.llm
        fields = {
            "model": s.model,
            "api_base": s.api_base,
            "api_key": s.api_key,
            "timeout_seconds": s.timeout_seconds,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            **s.config,
        }
        return _build("llm", s.provider, fields)  # type: ignore[no-any-return]

    @cached_property
    def embedder(self) -> Embedder:
        s = self.settings.embedder
        fields = {
            "model": s.model,
            "dimensions": s.dimensions,
            "api_base": s.api_base,
            "api_key": s.api_key,
            "timeout_seconds": s.timeout_seconds,
            "batch_size": s.batch_size,
            **s.config,
        }
        return _build("embedder", s.provider, fields)  # type: ignore[no-any-return]

    @cached_property
    def vector_store(self) -> VectorStore:
        s = self.settings.vector_store
        fields = {"path": s.path, "table": s.table, "dimensions": self.settings.embedder.dimensions, **s.config}
        return _build("vector_store", s.provider, fields)  # type: ignore[no-any-return]

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

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "redis" in self.__dict__:
            self.redis.close()
