"""Mem0-compatible wire models for memories (request and response bodies)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["user", "assistant", "system", "tool"]
EntityId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]


class Message(BaseModel):
    """One conversation turn, as Mem0 takes it."""

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str = Field(min_length=1)
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message content is blank")
        return value


class ScopeFields(BaseModel):
    """The entity ids that scope a memory. Mem0 requires at least one of them."""

    user_id: EntityId | None = None
    agent_id: EntityId | None = None
    run_id: EntityId | None = None
    app_id: EntityId | None = None

    def has_scope(self) -> bool:
        return any((self.user_id, self.agent_id, self.run_id))


def _expiration(value: Any) -> Any:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            pass
    raise ValueError("expiration_date must be a date, YYYY-MM-DD")


class MemoryCreate(ScopeFields):
    """Body of ``POST /v1/memories/`` and ``POST /v3/memories/add/`` (Mem0's add).

    Entity ids may come at the top level (v1 clients) or inside ``filters`` (the v3 client).
    """

    model_config = ConfigDict(extra="ignore")

    messages: list[Message] = Field(min_length=1)
    filters: dict[str, Any] | None = Field(None, description="Entity ids of the memories (v3 clients)")
    metadata: dict[str, Any] | None = None
    infer: bool = True
    async_mode: bool = True
    custom_instructions: str | None = Field(None, max_length=20_000)
    custom_categories: list[dict[str, str]] | None = Field(None, max_length=100)
    timestamp: float | None = Field(None, description="Unix time the conversation happened (created_at)")
    expiration_date: str | None = Field(None, description="YYYY-MM-DD; the memories expire after this day")
    immutable: bool = False

    @field_validator("messages", mode="before")
    @classmethod
    def _string_is_one_user_message(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"role": "user", "content": value}]
        if isinstance(value, dict):
            return [value]
        return value

    @field_validator("expiration_date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        return _expiration(value)

    @model_validator(mode="after")
    def _scope_from_filters(self) -> MemoryCreate:
        if self.filters:
            unknown = sorted(k for k in self.filters if k not in ENTITY_KEYS)
            if unknown:
                raise ValueError(f"add takes only entity ids in filters; unknown: {', '.join(unknown)}")
            for key in ENTITY_KEYS:
                value = self.filters.get(key)
                if value is not None:
                    if not isinstance(value, str) or not value.strip():
                        raise ValueError(f"filters.{key} must be a non-empty string")
                    if getattr(self, key) is None:
                        setattr(self, key, value)
            self.filters = None
        if not self.has_scope():
            raise ValueError("one of user_id, agent_id or run_id is required")
        return self


ENTITY_KEYS = ("user_id", "agent_id", "run_id", "app_id")


class SearchRequest(ScopeFields):
    """Body of the search routes (v1 top-level ids, v2/v3 ``filters``)."""

    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1, max_length=10_000)
    filters: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=1000)
    threshold: float | None = Field(None, ge=-1, le=1)
    rerank: bool = False
    categories: list[str] | None = None
    metadata: dict[str, Any] | None = Field(None, description="Metadata equality filters (v1)")
    show_expired: bool = False
    keyword_search: bool = False
    fields: list[str] | None = None
    enable_graph: bool = Field(False, description="Also return relations from graph memory (when enabled)")
    search_mode: Literal["vector", "hybrid"] | None = Field(
        None, description="hybrid (keyword + vector, the default) or vector; keyword_search=true means hybrid"
    )
    alpha: float | None = Field(None, ge=0, le=1, description="Hybrid weight: 1 = vector only, 0 = keyword only")

    @model_validator(mode="before")
    @classmethod
    def _top_k_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("top_k") is not None and "limit" not in data:
            data = {**data, "limit": data["top_k"]}
        return data


class GetAllRequest(ScopeFields):
    """Body of ``POST /v2/memories/`` and ``POST /v3/memories/`` (get_all)."""

    model_config = ConfigDict(extra="ignore")

    filters: dict[str, Any] | None = None
    page: int = Field(1, ge=1)
    page_size: int = Field(100, ge=1, le=1000)
    categories: list[str] | None = None
    show_expired: bool = False
    start_date: str | None = None
    end_date: str | None = None


class MemoryUpdate(BaseModel):
    """Body of ``PUT /v1/memories/{id}/``. ``expiration_date: null`` clears the expiry."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = Field(None, min_length=1, max_length=20_000)
    metadata: dict[str, Any] | None = None
    timestamp: float | str | None = None
    expiration_date: str | None = None

    @field_validator("expiration_date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        return _expiration(value)

    @model_validator(mode="before")
    @classmethod
    def _memory_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "memory" in data and "text" not in data:
            data = {**data, "text": data["memory"]}
        return data

    @model_validator(mode="after")
    def _something_to_change(self) -> MemoryUpdate:
        if not ({"text", "metadata", "timestamp", "expiration_date"} & self.model_fields_set):
            raise ValueError("give text, metadata, timestamp and/or expiration_date to update")
        return self


class MemoryPublic(BaseModel):
    """A memory as Mem0 returns it."""

    id: str
    memory: str
    hash: str
    metadata: dict[str, Any] | None = None
    categories: list[str] = Field(default_factory=list)
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    app_id: str | None = None
    created_at: datetime
    updated_at: datetime
    expiration_date: str | None = None
    immutable: bool = False
    score: float | None = None


class Relation(BaseModel):
    source: str
    relationship: str
    destination: str


class MemoryList(BaseModel):
    results: list[MemoryPublic]
    relations: list[Relation] | None = Field(None, description="With enable_graph: relations found from the query")
    relations_error: str | None = Field(None, description="Why relations are missing (graph worker down or slow)")


class MemoryPage(BaseModel):
    """A page of get_all, Mem0's paginated shape."""

    count: int
    next: str | None = None
    previous: str | None = None
    results: list[MemoryPublic]


class BatchUpdateItem(BaseModel):
    memory_id: str = Field(min_length=1)
    text: str | None = Field(None, min_length=1, max_length=20_000)
    metadata: dict[str, Any] | None = None


class BatchDeleteItem(BaseModel):
    memory_id: str = Field(min_length=1)


class BatchUpdate(BaseModel):
    memories: list[BatchUpdateItem] = Field(min_length=1)


class BatchDelete(BaseModel):
    memories: list[BatchDeleteItem] = Field(min_length=1)


class FeedbackCreate(BaseModel):
    memory_id: str = Field(min_length=1)
    feedback: Literal["POSITIVE", "NEGATIVE", "VERY_NEGATIVE"] | None = None
    feedback_reason: str | None = Field(None, max_length=5000)


class ExportCreate(ScopeFields):
    model_config = ConfigDict(extra="ignore")

    schema_: Any = Field(None, alias="schema")
    filters: dict[str, Any] | None = None


class ExportGet(ScopeFields):
    model_config = ConfigDict(extra="ignore")

    memory_export_id: str | None = None
    filters: dict[str, Any] | None = None


class HistoryEntry(BaseModel):
    """One row of a memory's history (Mem0's history shape)."""

    id: str
    memory_id: str
    old_memory: str | None
    new_memory: str | None
    event: Literal["ADD", "UPDATE", "DELETE"]
    created_at: datetime
    updated_at: datetime | None = None
    is_deleted: bool = False
    actor_id: str | None = None
    role: str | None = None
    job_id: str | None = None


class Deleted(BaseModel):
    message: str
