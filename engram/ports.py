"""The ports of the domain: what the stages need from the outside world.

Adapters are named backend + port (``LanceVectorStore``, ``LiteLLM``...). Every adapter of a port
passes the same contract tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from engram.scope import Scope
from schemas.graph import ExtractedGraph, Triple
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
    expiration_date: str | None = None  # YYYY-MM-DD; expired memories leave search and lists
    immutable: bool = False  # refuses updates (API edits and reconciliation alike)
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


    def extract_graph(self, messages: Sequence[Message], facts: Sequence[str], *, subject: str) -> ExtractedGraph:
        """Entities and relations of a conversation; first-person statements have ``subject`` as source.

        ``facts`` are the facts the extract stage kept (the raw messages when ``infer`` is false).
        """
        ...

    def decide_relation_deletions(
        self, existing: Sequence[Triple], new: Sequence[Triple], *, text: str, subject: str
    ) -> list[Triple]:
        """Which ``existing`` relations the new information (``text``, ``new``) makes untrue."""
        ...

    def extract_query_entities(self, query: str, *, subject: str) -> list[str]:
        """Names of the entities a search query is about (``subject`` for self-references)."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Text to vectors. One call per conversation: callers batch."""

    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-normalised vectors, one per text, in order."""
        ...


SearchMode = Literal["vector", "hybrid"]


@runtime_checkable
class VectorStore(Protocol):
    """Memories with vectors, filtered kNN per project. Must be safe with many processes.

    ``where`` is a parsed v2 filter (``engram.filters``); every store must answer it exactly as
    ``engram.filters.matches`` does. Expired memories are left out unless ``include_expired``.
    Stores may also have ``close()`` (release clients; the container calls it when present).
    """

    def upsert(self, records: Sequence[MemoryRecord]) -> None:
        """Insert or replace by id."""
        ...

    def insert(self, records: Sequence[MemoryRecord]) -> None:
        """Add memories whose ids the store does not hold: what ``upsert`` does for them, where a store
        can do it cheaper (LanceDB appends instead of joining on id). Given an id it already holds, a
        store may keep two rows, so callers pass only ids nothing else can have written. Optional for
        third-party stores: without it, ``apply_plan`` upserts."""
        ...

    def delete(self, ids: Sequence[str], *, project_id: str | None = None) -> None:
        """Delete by id; unknown ids are ignored. Give ``project_id`` when known: without it a store
        partitioned by project (Weaviate's tenants) has to look in every project."""
        ...

    def get(self, memory_id: str, project_id: str) -> MemoryRecord | None: ...

    def search(
        self,
        vector: Sequence[float],
        *,
        project_id: str,
        where: Any = None,
        limit: int,
        threshold: float | None = None,
        include_expired: bool = False,
        query_text: str | None = None,
        mode: SearchMode | None = None,
        alpha: float | None = None,
        include_vectors: bool = False,
    ) -> list[MemoryRecord]:
        """Best memories matching ``where``, best first, each with its ``score``.

        ``mode="vector"``: ``score`` is the cosine similarity to ``vector``. ``mode="hybrid"``: keyword
        (BM25 over ``query_text``) and vector results fused by relative score fusion, ``score`` in
        [0, 1]; ``alpha`` weighs them (1 = vector only, 0 = keyword only). ``None`` for ``mode`` or
        ``alpha`` means the store's configured default; without ``query_text`` (or with one that is
        blank) the default mode is vector, and an explicit ``"hybrid"`` raises ``ValueError``.
        In every mode ``threshold`` drops memories whose cosine similarity to ``vector`` is below it
        (a fused score is relative to the other candidates, so it cannot say what is irrelevant).
        Records carry their vectors only with ``include_vectors`` (reading them back is not free).
        """
        ...

    def nearest_each(
        self,
        vectors: Sequence[Sequence[float]],
        *,
        project_id: str,
        where: Any = None,
        limit: int,
        include_vectors: bool = False,
    ) -> list[list[MemoryRecord]]:
        """For each of ``vectors``, what ``search(vector, mode="vector", ...)`` answers, in order.

        Reconciliation looks up every fact of a conversation at once: a store that can answer
        several query vectors in one request should (LanceDB: a third of the CPU of one per vector).
        """
        ...

    def list(
        self, *, project_id: str, where: Any = None, limit: int, offset: int = 0, include_expired: bool = False
    ) -> list[MemoryRecord]:
        """Memories matching ``where``, newest first."""
        ...

    def count(self, *, project_id: str, where: Any = None, include_expired: bool = True) -> int: ...

    def delete_project(self, project_id: str) -> int:
        """Delete every memory of a project; returns how many there were."""
        ...

    def ping(self) -> None:
        """Raise a clear error if the store cannot be used (unreachable, or vectors of another size)."""
        ...
