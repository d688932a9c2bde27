"""Output models of the LLM prompts: every response is validated against one of these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator


class ExtractedFacts(BaseModel):
    """Answer to the fact-extraction prompt: ``{"facts": [...]}``."""

    facts: list[str] = Field(default_factory=list)

    @field_validator("facts", mode="before")
    @classmethod
    def _drop_blank(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [f.strip() for f in value if isinstance(f, str) and f.strip()]
        return value


class MemoryDecision(BaseModel):
    """One line of the update prompt's answer; ``id`` is the small integer shown to the LLM."""

    id: str
    text: str
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    old_memory: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("event", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class MemoryDecisions(BaseModel):
    """Answer to the update prompt: ``{"memory": [...]}`` (Mem0's shape)."""

    memory: list[MemoryDecision] = Field(default_factory=list)
