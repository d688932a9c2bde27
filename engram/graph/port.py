"""The ``GraphStore`` port and the records it deals in. Adapters: ``KuzuGraphStore`` (kuzu or ladybug)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from engram.scope import Scope
from schemas.graph import Triple


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


# Scope ids a graph read matches: a key present must be equal (even ""), a key left out matches anything.
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
        """Delete the entities matching ``ids`` with their relations; returns how many there were."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
