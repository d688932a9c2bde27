"""Mem0-compatible wire models for memories (request and response bodies)."""

from __future__ import annotations

from datetime import datetime
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


class MemoryCreate(ScopeFields):
    """Body of ``POST /v1/memories/`` (Mem0's add)."""

    model_config = ConfigDict(extra="ignore")

    messages: list[Message] = Field(min_length=1)
    metadata: dict[str, Any] | None = None
    infer: bool = True
    async_mode: bool = True

    @field_validator("messages", mode="before")
    @classmethod
    def _string_is_one_user_message(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"role": "user", "content": value}]
        if isinstance(value, dict):
            return [value]
        return value

    @model_validator(mode="after")
    def _needs_scope(self) -> MemoryCreate:
        if not self.has_scope():
            raise ValueError("one of user_id, agent_id or run_id is required")
        return self


class SearchRequest(ScopeFields):
    """Body of ``POST /v1/memories/search/``."""

    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1, max_length=10_000)
    limit: int = Field(10, ge=1, le=1000)
    threshold: float | None = Field(None, ge=-1, le=1)
    filters: dict[str, Any] | None = Field(None, description="Metadata equality filters")

    @model_validator(mode="before")
    @classmethod
    def _top_k_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "top_k" in data and "limit" not in data:
            data = {**data, "limit": data["top_k"]}
        return data

    @model_validator(mode="after")
    def _needs_scope(self) -> SearchRequest:
        if not self.has_scope():
            raise ValueError("one of user_id, agent_id or run_id is required")
        return self


class MemoryUpdate(BaseModel):
    """Body of ``PUT /v1/memories/{id}/``."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = Field(None, min_length=1, max_length=20_000)
    metadata: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _memory_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "memory" in data and "text" not in data:
            data = {**data, "text": data["memory"]}
        return data

    @model_validator(mode="after")
    def _something_to_change(self) -> MemoryUpdate:
        if self.text is None and self.metadata is None:
            raise ValueError("give 'text' and/or 'metadata' to update")
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
    score: float | None = None


class MemoryList(BaseModel):
    results: list[MemoryPublic]


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
