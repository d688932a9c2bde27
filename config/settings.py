"""One pydantic-settings ``Settings`` for every process (API, workers, CLI).

Environment variables use the ``ENGRAM_`` prefix and ``__`` for nesting, e.g.
``ENGRAM_LLM__PROVIDER=litellm`` or ``ENGRAM_SQL__URL=postgresql+psycopg://...``.
Nothing here connects to anything; ``config.container`` builds the clients.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("./data")


class LLMSettings(BaseModel):
    """Which LLM extracts facts and decides ADD/UPDATE/DELETE/NONE."""

    provider: str = Field(
        "heuristic",
        description="'heuristic' (offline, deterministic), 'litellm', or a plugin from the engram.llms group",
    )
    model: str = Field("gpt-4o-mini", description="litellm model name, e.g. 'openai/gpt-4o-mini'")
    api_base: str | None = Field(None, description="OpenAI-compatible base URL (litellm api_base)")
    api_key: str | None = Field(None, description="Provider API key; never logged")
    timeout_seconds: float = Field(60.0, gt=0, description="Per-call timeout")
    temperature: float = 0.0
    max_tokens: int = Field(2000, gt=0)
    config: dict[str, Any] = Field(default_factory=dict, description="Extra typed config for plugin providers")


class EmbedderSettings(BaseModel):
    """How facts and queries become vectors."""

    provider: str = Field(
        "sentence_transformers",
        description="'sentence_transformers' (local all-MiniLM-L6-v2), 'litellm', or a plugin",
    )
    model: str = Field("all-MiniLM-L6-v2", description="Local model name or path, or litellm embedding model")
    dimensions: int = Field(384, gt=0, description="Vector size; must match the model")
    api_base: str | None = None
    api_key: str | None = None
    timeout_seconds: float = Field(30.0, gt=0)
    batch_size: int = Field(64, gt=0)
    config: dict[str, Any] = Field(default_factory=dict)


class VectorStoreSettings(BaseModel):
    """Where memories and their vectors live."""

    provider: str = Field("lancedb", description="'lancedb' (embedded, on disk) or a plugin")
    path: Path = Field(DEFAULT_DATA_DIR / "vectors", description="LanceDB directory")
    table: str = "memories"
    config: dict[str, Any] = Field(default_factory=dict)


class GraphStoreSettings(BaseModel):
    """Graph memory (entities and relations); disabled until a provider is set.

    Every process must agree on ``shards``: the scope-to-shard mapping depends on it (DESIGN.md #4).
    """

    provider: str | None = Field(None, description="'kuzu' enables graph memory; None (or empty) disables it")
    path: Path = Field(DEFAULT_DATA_DIR / "graph", description="Directory of the shard files (shard-<n>.kuzu)")
    config: dict[str, Any] = Field(default_factory=dict, description="Extra typed config of the graph store")
    backend: Literal["kuzu", "ladybug"] = Field("kuzu", description="Import kuzu (0.11.3) or its fork ladybug")
    shards: int = Field(1, ge=1, le=1024, description="Number of shard files, each owned by one graph.<n> worker")
    shard: int | None = Field(
        None, ge=0, description="The shard this process owns; set only on graph workers (learned from -Q graph.<n>)"
    )
    query_timeout_seconds: float = Field(2.0, gt=0, description="How long the API waits for a graph worker's answer")
    dedupe_threshold: float = Field(0.9, gt=0, le=1, description="Cosine of entity names at/above which they merge")
    search_threshold: float = Field(0.7, gt=0, le=1, description="Cosine a query entity needs to match a stored one")
    search_limit: int = Field(100, gt=0, description="Relations returned with a search, at most")

    @field_validator("provider", mode="before")
    @classmethod
    def _blank_is_disabled(cls, value: Any) -> Any:
        # docker-compose passes unset variables as empty strings.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _shard_in_range(self) -> GraphStoreSettings:
        if self.shard is not None and self.shard >= self.shards:
            raise ValueError(f"graph_store.shard is {self.shard} but there are only {self.shards} shards")
        return self

    @property
    def enabled(self) -> bool:
        return self.provider is not None


class SQLSettings(BaseModel):
    """Job state, events and history. SQLite by default, PostgreSQL by URL."""

    url: str = Field("sqlite:///./data/engram.db", description="SQLAlchemy URL")
    busy_timeout_ms: int = Field(30_000, gt=0, description="SQLite busy timeout")
    pool_size: int = Field(5, gt=0)
    auto_migrate: bool = Field(True, description="Run Alembic migrations when a process starts")


class RedisSettings(BaseModel):
    """Redis is the Celery broker and holds the per-scope locks."""

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "engram:"


class PipelineSettings(BaseModel):
    """Behaviour of the extract → embed → reconcile → notify pipeline."""

    max_attempts_per_stage: int = Field(5, gt=0, description="Attempt cap before a job FAILS")
    retry_backoff_seconds: float = Field(2.0, gt=0, description="Base of the exponential backoff")
    retry_backoff_max_seconds: float = Field(300.0, gt=0)
    lock_ttl_seconds: float = Field(120.0, gt=0, description="Scope lock expiry; above the longest reconcile")
    lock_retry_seconds: float = Field(0.25, gt=0, description="Countdown when a scope lock is busy")
    similar_memories_k: int = Field(5, gt=0, description="Existing memories shown per fact when reconciling")
    duplicate_threshold: float = Field(0.92, gt=0, le=1, description="Cosine at/above which a fact is NONE")
    custom_fact_extraction_prompt: str | None = None
    custom_update_memory_prompt: str | None = None
    visibility_timeout_seconds: int = Field(3600, gt=0, description="Broker redelivery; above the longest task")
    sync_wait_seconds: float = Field(120.0, gt=0, description="How long async_mode=false waits")


class APISettings(BaseModel):
    """Request limits of the HTTP API."""

    max_messages_per_request: int = Field(200, gt=0)
    max_message_chars: int = Field(20_000, gt=0)
    max_metadata_bytes: int = Field(16_384, gt=0)
    max_body_bytes: int = Field(2_000_000, gt=0)


class Settings(BaseSettings):
    """All of engram's configuration. Validated once, when a process starts."""

    model_config = SettingsConfigDict(env_prefix="ENGRAM_", env_nested_delimiter="__", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = DEFAULT_DATA_DIR
    llm: LLMSettings = LLMSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    vector_store: VectorStoreSettings = VectorStoreSettings()
    graph_store: GraphStoreSettings = GraphStoreSettings()
    sql: SQLSettings = SQLSettings()
    redis: RedisSettings = RedisSettings()
    pipeline: PipelineSettings = PipelineSettings()
    api: APISettings = APISettings()

    @model_validator(mode="after")
    def _refuse_unsafe_production_defaults(self) -> Settings:
        if self.environment != "production":
            return self
        problems = []
        if self.llm.provider == "heuristic":
            problems.append("llm.provider is 'heuristic' (the offline stand-in); choose a real LLM")
        if self.sql.url.startswith("sqlite") and "./data" in self.sql.url:
            problems.append("sql.url is the development SQLite file; set ENGRAM_SQL__URL")
        if self.redis.url.startswith("redis://127.0.0.1") and "@" not in self.redis.url:
            problems.append("redis.url is an unauthenticated loopback Redis; set ENGRAM_REDIS__URL")
        if problems:
            raise ValueError("unsafe settings for production: " + "; ".join(problems))
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use (never at import)."""
    return Settings()
