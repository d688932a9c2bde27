"""The ports of the domain: what the stages need from the outside world.

Adapters are named backend + port (``LanceVectorStore``, ``LiteLLM``...). Every adapter of a port
passes the same contract tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class VectorStore(Protocol):
    """Memories with vectors, filtered kNN per project. Must be safe with many processes.

    ``where`` is a parsed v2 filter (``engram.filters``); every store must answer it exactly as
    ``engram.filters.matches`` does. Expired memories are left out unless ``include_expired``.
    """

    def upsert(self, records: Sequence[MemoryRecord]) -> None:
        """Insert or replace by id."""
        ...

    def delete(self, ids: Sequence[str]) -> None:
        """Delete by id; unknown ids are ignored."""
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
    ) -> list[MemoryRecord]:
        """Nearest memories matching ``where``, best first, with ``score`` (cosine similarity)."""
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
        """Raise if the store cannot be used."""
        ...


@dataclass(slots=True)
class GraphEntity:
    """An entity node. Entities belong to one exact scope; ids are deterministic per scope and name."""

    id: str
    name: str
    type: str
    scope: Scope
    embedding: list[float] = field(default_factory=list)
    created_at: datetime | None = None
    score: float | None = None  # cosine to the query vector, when found by one


@dataclass(frozen=True, slots=True)
class GraphRelation:
    """A relation edge (source)-[relationship]->(destination) between entities of one scope."""

    source_id: str
    relationship: str
    destination_id: str
    source: str = ""
    destination: str = ""
    scope: Scope | None = None
    created_at: datetime | None = None

    def triple(self) -> Triple:
        return Triple(source=self.source, relationship=self.relationship, destination=self.destination)


@dataclass(slots=True)
class GraphChanges:
    """One job's effect on the graph of one scope, applied in one transaction."""

    scope: Scope
    entities: list[GraphEntity] = field(default_factory=list)  # created when missing, merged by id
    added: list[GraphRelation] = field(default_factory=list)
    deleted: list[GraphRelation] = field(default_factory=list)

    def events(self) -> dict[str, list[dict[str, str]]]:
        """The ``relations`` part of the job result: ``{"added": [...], "deleted": [...]}``."""
        return {
            "added": [r.triple().model_dump() for r in self.added],
            "deleted": [r.triple().model_dump() for r in self.deleted],
        }


# Scope ids a graph read matches: a key present must be equal (even when ""), a key left out matches anything.
ScopeIds = Mapping[str, str]


@runtime_checkable
class GraphStore(Protocol):
    """Entities and relations of one shard. Only the shard's graph worker process opens it (DESIGN.md #4)."""

    shard: int

    def entities(self, project_id: str, ids: ScopeIds, *, limit: int = 10_000) -> list[GraphEntity]:
        """Entities matching ``ids``, with their embeddings, oldest first."""
        ...

    def similar_entities(
        self, project_id: str, ids: ScopeIds, vector: Sequence[float], *, threshold: float, limit: int
    ) -> list[GraphEntity]:
        """Entities whose name embedding has cosine >= ``threshold`` with ``vector``, best first, with ``score``."""
        ...

    def relations(
        self, project_id: str, ids: ScopeIds, *, entity_ids: Sequence[str] | None = None, limit: int = 10_000
    ) -> list[GraphRelation]:
        """Relations matching ``ids``; with ``entity_ids`` only those touching one of them (either end)."""
        ...

    def applied(self, job_id: str) -> dict[str, Any] | None:
        """The events recorded when ``job_id``'s changes were applied, or None if they never were."""
        ...

    def apply(self, job_id: str, changes: GraphChanges) -> None:
        """Apply a job's changes and mark the job applied, atomically: all of it or nothing."""
        ...

    def clear(self, project_id: str, ids: ScopeIds) -> int:
        """Delete the entities matching ``ids`` with their relations; returns how many entities there were."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
