"""The graph stage: what one conversation changes in its scope's graph (Mem0's graph memory add).

``plan_graph`` reads the scope's graph and decides; nothing is written until the caller applies
the returned changes, atomically with the job's applied marker (``GraphStore.apply``). So a
redelivered job either finds its marker (and writes nothing) or plans afresh against the graph as
it is now: a decision never outlives a crash to be applied over newer jobs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import numpy as np

from engram.graph.port import GraphChanges, GraphEntity, GraphRelation, GraphStore, ScopeIds
from engram.ids import ENGRAM_NAMESPACE
from engram.ports import LLM, Embedder
from engram.scope import Scope
from schemas.graph import ExtractedGraph
from schemas.memories import Message

SUBJECT_TYPE = "user"
NUMBER = re.compile(r"\d+")


def name_key(name: str) -> str:
    """Names that differ only in case or spacing are the same entity."""
    return " ".join(name.lower().split())


def entity_id_for(scope: Scope, name: str) -> str:
    """Deterministic per scope and name, so a replanned job merges into the same node."""
    raw = "\x1f".join((scope.project_id, scope.user_id, scope.agent_id, scope.run_id, name_key(name)))
    return str(uuid.uuid5(ENGRAM_NAMESPACE, "entity:" + raw))


def exact_ids(scope: Scope) -> ScopeIds:
    """Exactly this scope: ids left out must be empty on the entity too (like reconcile's scope)."""
    return {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}


def subject_of(scope: Scope) -> str:
    """The entity first-person statements are about: the user, else the agent or run."""
    return scope.user_id or scope.agent_id or scope.run_id


class EntityResolver:
    """Deduplicates entity names within a scope: same normalised name, or name embeddings this close."""

    def __init__(self, scope: Scope, existing: Sequence[GraphEntity], threshold: float) -> None:
        self.scope = scope
        self.threshold = threshold
        self.pool: list[GraphEntity] = []
        self.by_key: dict[str, GraphEntity] = {}
        self._matrix: np.ndarray | None = None  # the pool's embeddings, rebuilt after the pool grows
        for entity in existing:
            self._remember(entity)

    def _remember(self, entity: GraphEntity) -> None:
        self.pool.append(entity)
        self.by_key.setdefault(name_key(entity.name), entity)
        self._matrix = None

    def match(self, name: str, vector: Sequence[float]) -> GraphEntity | None:
        exact = self.by_key.get(name_key(name))
        if exact is not None or not self.pool:
            return exact
        if self._matrix is None:
            self._matrix = np.asarray([e.embedding for e in self.pool], dtype="float32")
        scores = self._matrix @ np.asarray(vector, dtype="float32")
        for index in np.argsort(-scores):
            if float(scores[index]) < self.threshold:
                break
            candidate = self.pool[int(index)]
            # "Room 101" and "Room 102" embed almost alike; names that differ in a number never merge.
            if NUMBER.findall(candidate.name) == NUMBER.findall(name):
                return candidate
        return None

    def create(self, name: str, vector: Sequence[float], entity_type: str) -> GraphEntity:
        entity = GraphEntity(entity_id_for(self.scope, name), name, entity_type, self.scope, list(vector))
        self._remember(entity)  # later names of the same job dedupe against it too
        return entity


def _names(extraction: ExtractedGraph) -> tuple[list[str], set[str]]:
    """Every name to resolve (relation ends first), and the keys of those that must exist afterwards."""
    ordered: dict[str, str] = {}
    for triple in extraction.relations:
        ordered.setdefault(name_key(triple.source), triple.source)
        ordered.setdefault(name_key(triple.destination), triple.destination)
    needed = set(ordered)
    for entity in extraction.entities:  # mentioned without a relation: only used to find existing ones
        ordered.setdefault(name_key(entity.name), entity.name)
    return list(ordered.values()), needed


def plan_graph(
    *,
    messages: Sequence[Message],
    facts: Sequence[str],
    scope: Scope,
    store: GraphStore,
    llm: LLM,
    embedder: Embedder,
    dedupe_threshold: float,
) -> GraphChanges:
    """Extract entities and relations, resolve them against the scope's graph, decide deletions."""
    subject = subject_of(scope)
    extraction = llm.extract_graph(messages, facts, subject=subject)
    names, needed = _names(extraction)
    if not names:
        return GraphChanges(scope)
    types = {name_key(e.name): e.type for e in extraction.entities}
    types[name_key(subject)] = SUBJECT_TYPE
    existing = store.entities(scope.project_id, exact_ids(scope))
    resolver = EntityResolver(scope, existing, dedupe_threshold)
    existing_ids = {e.id for e in existing}
    resolved: dict[str, GraphEntity] = {}
    for name, vector in zip(names, embedder.embed(names), strict=True):
        found = resolver.match(name, vector)
        if found is None and name_key(name) in needed:
            found = resolver.create(name, vector, types.get(name_key(name), "entity"))
        if found is not None:
            resolved[name_key(name)] = found

    proposed: dict[tuple[str, str, str], GraphRelation] = {}
    for triple in extraction.relations:
        source, destination = resolved[name_key(triple.source)], resolved[name_key(triple.destination)]
        if source.id == destination.id:
            continue  # both ends resolved to one entity ("ana" name_is "Ana"): says nothing
        relation = GraphRelation(source.id, triple.relationship, destination.id, source.name, destination.name, scope)
        proposed.setdefault(_edge_key(relation), relation)

    touched = [e.id for e in resolved.values() if e.id in existing_ids]
    current = store.relations(scope.project_id, exact_ids(scope), entity_ids=touched) if touched else []
    current_keys = {_edge_key(r) for r in current}
    doomed = llm.decide_relation_deletions(
        [r.triple() for r in current],
        [r.triple() for r in proposed.values()],
        text="\n".join(facts) or "\n".join(m.content for m in messages),
        subject=subject,
    )
    doomed_keys = {t.key() for t in doomed}
    deleted = [r for r in current if r.triple().key() in doomed_keys and _edge_key(r) not in proposed]
    added = [r for key, r in proposed.items() if key not in current_keys]
    used = {r.source_id for r in added} | {r.destination_id for r in added}
    created = [e for e in resolved.values() if e.id in used and e.id not in existing_ids]
    return GraphChanges(scope, entities=list({e.id: e for e in created}.values()), added=added, deleted=deleted)


def _edge_key(relation: GraphRelation) -> tuple[str, str, str]:
    return (relation.source_id, relation.relationship, relation.destination_id)
