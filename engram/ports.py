"""The ports of the domain: what the stages need from the outside world.

Adapters are named backend + port (``LanceVectorStore``, ``LiteLLM``...). Every adapter of a port
passes the same contract tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from engram.scope import Scope
from schemas.llm import MemoryDecision
from schemas.memories import Message


@dataclass(slots=True)
class MemoryRecord:
    """A stored memory with its vector."""

    id: str
    memory: str
    hash: str
    scope: Scope
    vector: list[float]
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    app_id: str = ""
    categories: list[str] = field(default_factory=list)
    score: float | None = None


@dataclass(frozen=True, slots=True)
class ExistingMemory:
    """An existing memory shown to the update decision, with its similarity to the new facts."""

    id: str
    text: str
    score: float


@runtime_checkable
class LLM(Protocol):
    """Turns conversations into facts and decides how facts change what is stored."""

    def extract_facts(self, messages: Sequence[Message], *, custom_prompt: str | None = None) -> list[str]:
        """The facts worth remembering from a conversation (may be empty)."""
        ...

    def decide_updates(
        self,
        facts: Sequence[str],
        existing: Sequence[ExistingMemory],
        *,
        similarity: Sequence[Sequence[float]] | None = None,
        custom_prompt: str | None = None,
    ) -> list[MemoryDecision]:
        """ADD / UPDATE / DELETE / NONE for each fact against ``existing``.

        Decisions refer to existing memories by their index in ``existing`` (as a string) and to new
        facts with ids ``"new:<fact index>"``. ``similarity[i][j]`` is the cosine between fact i and
        existing memory j, when the caller has it.
        """
        ...


@runtime_checkable
class Embedder(Protocol):
    """Text to vectors. One call per conversation: callers batch."""

    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-normalised vectors, one per text, in order."""
        ...


@runtime_checkable
class VectorStore(Protocol):
    """Memories with vectors, filtered kNN per scope. Must be safe with many processes."""

    def upsert(self, records: Sequence[MemoryRecord]) -> None:
        """Insert or replace by id."""
        ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def get(self, memory_id: str, project_id: str) -> MemoryRecord | None: ...

    def search(
        self,
        vector: Sequence[float],
        filters: dict[str, Any],
        *,
        limit: int,
        threshold: float | None = None,
    ) -> list[MemoryRecord]:
        """Nearest memories matching ``filters`` (field → value equality), best first, with ``score``."""
        ...

    def list(self, filters: dict[str, Any], *, limit: int, offset: int = 0) -> list[MemoryRecord]:
        """Memories matching ``filters``, newest first."""
        ...

    def count(self, filters: dict[str, Any]) -> int: ...

    def ping(self) -> None:
        """Raise if the store cannot be used."""
        ...
