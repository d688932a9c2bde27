"""One pydantic-settings ``Settings`` for every process (API, workers, CLI).

Environment variables use the ``ENGRAM_`` prefix and ``__`` for nesting, e.g.
``ENGRAM_LLM__PROVIDER=litellm`` or ``ENGRAM_SQL__URL=postgresql+psycopg://...``.
Nothing here connects to anything; ``config.container`` builds the clients.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
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
    api_key: SecretStr | None = Field(None, description="Provider API key; masked in reprs and logs")
    timeout_seconds: float = Field(60.0, gt=0, description="Per-call timeout")
    temperature: float = 0.0
    max_tokens: int = Field(2000, gt=0)
    requests_per_minute: int = Field(0, ge=0, description="Shared by all workers (Redis); 0 = no limit")
    tokens_per_minute: int = Field(0, ge=0, description="Shared by all workers (Redis); 0 = no limit")
    config: dict[str, Any] = Field(default_factory=dict, description="Extra typed config for plugin providers")


class EmbedderSettings(BaseModel):
    """How facts and queries become vectors."""

    provider: str = Field(
        "onnx",
        description="'onnx' (local all-MiniLM-L6-v2 on ONNX Runtime), 'sentence_transformers' (the same model on "
        "torch), 'litellm', or a plugin",
    )
    model: str = Field("all-MiniLM-L6-v2", description="Local model name or path, or litellm embedding model")
    dimensions: int = Field(384, gt=0, description="Vector size; must match the model")
    api_base: str | None = None
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(30.0, gt=0)
    batch_size: int = Field(64, gt=0)
    # A query's embedding is most of a search's time, and one short text on one core streams the model's
    # weights through a cache the store's reads have just filled (bench/: 5.8 against 4.7 ms on two threads,
    # after a scope read at 100k memories). Workers embed in many processes at once and keep one each.
    api_threads: int = Field(
        0, ge=0, description="ONNX Runtime threads of the API's embedder (search queries); 0: one per core"
    )
    config: dict[str, Any] = Field(default_factory=dict)


class WeaviateSettings(BaseModel):
    """How to reach Weaviate when ``vector_store.provider`` is 'weaviate' (client v4: REST + gRPC)."""

    url: str = Field("http://localhost:8080", description="REST endpoint; https:// for TLS")
    grpc_host: str | None = Field(None, description="gRPC host; the URL's host when unset")
    grpc_port: int = Field(50051, gt=0, description="gRPC port (Weaviate's default 50051)")
    grpc_secure: bool | None = Field(None, description="TLS for gRPC; follows the URL's scheme when unset")
    api_key: SecretStr | None = Field(None, description="Weaviate API key; masked in reprs and logs")
    collection: str = Field("EngramMemories", description="One collection per deployment; a tenant per project")
    batch_size: int = Field(100, gt=0, description="Objects per write batch")
    init_timeout_seconds: float = Field(10.0, gt=0, description="Connect and start-up checks")
    query_timeout_seconds: float = Field(30.0, gt=0)
    insert_timeout_seconds: float = Field(120.0, gt=0)


class VectorStoreSettings(BaseModel):
    """Where memories and their vectors live, and how search ranks them."""

    provider: str = Field("lancedb", description="'lancedb' (embedded, on disk), 'weaviate', or a plugin")
    path: Path = Field(DEFAULT_DATA_DIR / "vectors", description="LanceDB directory")
    table: str = "memories"
    # Hybrid by default: on LoCoMo it lifts hit@10 from 0.554 to 0.725 over plain cosine
    # (bench/results/locomo_retrieval.md); alpha 0.3-0.5 is a plateau, 0.4 its middle.
    search_mode: Literal["vector", "hybrid"] = Field(
        "hybrid",
        description="Ranking of a search with a text query: 'hybrid' fuses BM25 keyword and vector scores, "
        "'vector' is cosine only. Searches without text (reconciliation) are always vector.",
    )
    hybrid_alpha: float = Field(
        0.4, ge=0, le=1, description="Vector weight in hybrid search: 1 = vector only, 0 = keyword only"
    )
    weaviate: WeaviateSettings = WeaviateSettings()
    # Writers ask a default-queue worker for the embedded store's upkeep at most this often, all processes
    # together; each upkeep does everything due. Longer lets more one-job fragments pile up between them.
    upkeep_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="LanceDB upkeep (compaction, indexing) is asked for at most this often"
    )
    # Lance's async runtime (tokio) starts a thread per core by default. In a worker, whose store calls are small
    # reads and appends, their handoffs cost more CPU than one thread's queue (bench/: CPU of a 3-row append
    # 11.4 -> 8.3 ms, a scope's nearest-memory query 13.9 -> 11.0). The API keeps one per core: a hybrid search
    # runs its two queries side by side (search at 100k with one thread: p50 ~18 against ~15 ms). An explicit
    # TOKIO_WORKER_THREADS wins over both.
    worker_runtime_threads: int = Field(
        1, ge=0, description="LanceDB's async runtime threads in each worker process; 0: one per core"
    )
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
    branch_deadline_seconds: float = Field(
        600.0,
        gt=0,
        description="A job's graph branch still PENDING this long after it opened is marked FAILED by the sweeper, "
        "so the job ends (SUCCEEDED, its memories stored) although no graph worker finished it. A graph write "
        "arriving later is still applied; the job's end does not change",
    )

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
    lock_wait_seconds: float = Field(
        1.0,
        ge=0,
        description="How long a task waits in place for a busy scope lock before it retries with a countdown: "
        "a retry costs a broker round trip and is the most common one when a user's conversations arrive together",
    )
    lock_retry_seconds: float = Field(0.25, gt=0, description="Countdown when a scope lock is busy (first retry)")
    lock_retry_max_seconds: float = Field(
        5.0, gt=0, description="Cap of the countdown, which doubles with each busy retry of a task (a hot scope)"
    )
    similar_memories_k: int = Field(5, gt=0, description="Existing memories shown per fact when reconciling")
    duplicate_threshold: float = Field(0.92, gt=0, le=1, description="Cosine at/above which a fact is NONE")
    custom_fact_extraction_prompt: str | None = None
    custom_update_memory_prompt: str | None = None
    visibility_timeout_seconds: int = Field(3600, gt=0, description="Broker redelivery; above the longest task")
    sync_wait_seconds: float = Field(120.0, gt=0, description="How long async_mode=false waits")
    # Issue #8: the sweeper (engram/sweeper.py) re-sends jobs whose queue message was lost.
    stuck_after_seconds: float = Field(
        900.0,
        gt=0,
        description="A PENDING/RUNNING job untouched this long is re-sent by the sweeper; above the longest stage "
        "plus its longest retry wait (a duplicate is harmless, it only cuts a backoff short)",
    )
    sweep_batch_size: int = Field(500, gt=0, description="Jobs re-sent per sweep, at most (bounds one after an outage)")
    separate_stage_tasks: bool = Field(
        False,
        description="Run embed and notify as Celery tasks of their own (Flower then lists every stage as a task). "
        "Off: embed runs in the extract task and notify in the task that ends the job's last branch, with the same "
        "done markers, attempt caps and stage metrics, and a broker hop fewer each (bench/: 11-27 % less CPU per "
        "conversation in interleaved pairs)",
    )
    task_sent_events: bool = Field(
        True,
        description="Publish a task-sent event with every task message, so Flower lists tasks still queued (DESIGN.md "
        "#8). Each is a second publish as costly as the message (bench/: ~10 % of the API's time under load); "
        "without them Flower shows a task from when a worker receives it",
    )

    @model_validator(mode="after")
    def _stuck_after_outlasts_a_retry_wait(self) -> PipelineSettings:
        # Issue #8: a job waiting out its backoff would otherwise look stuck and be re-sent early.
        if self.stuck_after_seconds <= self.retry_backoff_max_seconds:
            raise ValueError(
                f"pipeline.stuck_after_seconds ({self.stuck_after_seconds}) must exceed "
                f"pipeline.retry_backoff_max_seconds ({self.retry_backoff_max_seconds})"
            )
        return self


class APISettings(BaseModel):
    """Request limits of the HTTP API."""

    max_messages_per_request: int = Field(200, gt=0)
    max_message_chars: int = Field(20_000, gt=0)
    max_metadata_bytes: int = Field(16_384, gt=0)
    max_body_bytes: int = Field(20_000_000, gt=0, description="Largest request body (batch uploads included)")
    max_batch_conversations: int = Field(1000, gt=0, description="Conversations per batch ingest request")
    max_queue_depth: int = Field(
        100_000, ge=0, description="Jobs waiting in the first stage's queue before ingest answers 429 (0: no limit)"
    )
    backpressure_retry_after_seconds: int = Field(5, gt=0)
    requests_per_second_per_key: float = Field(
        0, ge=0, description="Per API key and API process; 0 = no limit. Over it: 429 with Retry-After"
    )
    request_burst_per_key: int = Field(200, gt=0)


class WebhookSettings(BaseModel):
    """Webhook delivery (DESIGN.md #9). Each webhook's signing secret lives in SQL, never here."""

    retry_schedule_seconds: list[float] = Field(
        [5, 30, 120, 600, 1800, 3600, 7200, 14400],
        description="Delay before each retry (its length is the number of retries); then the delivery FAILS",
    )
    jitter: float = Field(0.2, ge=0, lt=1, description="Each delay is scaled by a random factor in [1-j, 1+j]")
    timeout_seconds: float = Field(10.0, gt=0, description="One budget per attempt, connect to answer: 2xx within it")
    max_retry_after_seconds: float = Field(86_400, gt=0, description="A receiver's Retry-After is honoured up to this")
    allow_private_targets: bool = Field(
        False, description="Let webhooks reach private, loopback and link-local addresses (SSRF risk)"
    )
    allowed_networks: list[str] = Field(
        default_factory=list, description="Networks allowed although not public, e.g. ['127.0.0.1/32'] for tests"
    )
    max_response_chars: int = Field(2000, ge=0, description="Receiver's answer kept per attempt, truncated")
    secret_grace_seconds: float = Field(86_400, ge=0, description="A rotated-out secret still signs this long")
    sweep_grace_seconds: float = Field(60.0, gt=0, description="A due delivery this overdue is re-sent by the sweeper")

    @field_validator("retry_schedule_seconds")
    @classmethod
    def _positive_delays(cls, value: list[float]) -> list[float]:
        if any(d <= 0 for d in value):
            raise ValueError("retry delays must be positive")
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value


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
    webhooks: WebhookSettings = WebhookSettings()

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
