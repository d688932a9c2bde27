"""Graph reads, run by the shard's graph worker for the API (plain functions over a ``GraphStore``).

Each returns JSON-ready data: the answer travels back to the API through Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engram.graph.port import GraphStore, ScopeIds
from schemas.graph import GraphEntityPublic, GraphRelationPublic

# Entities each query term may match: the neighbourhood of a few close names is what a search needs.
ENTITIES_PER_TERM = 10


def search_relations(
    store: GraphStore,
    project_id: str,
    ids: ScopeIds,
    terms: Sequence[tuple[str, Sequence[float]]],
    *,
    threshold: float,
    limit: int,
) -> list[dict[str, Any]]:
    """Relations around the entities whose names match the query's entities, closest match first.

    Mem0's graph search: embedding match on entity names, then the one-hop neighbourhood.
    """
    best: dict[str, float] = {}
    for _name, vector in terms:
        for entity in store.similar_entities(project_id, ids, vector, threshold=threshold, limit=ENTITIES_PER_TERM):
            best[entity.id] = max(best.get(entity.id, -1.0), entity.score or 0.0)
    if not best:
        return []
    relations = store.relations(project_id, ids, entity_ids=list(best), limit=limit * 4)
    ranked = sorted(
        relations, key=lambda r: max(best.get(r.source_id, -1.0), best.get(r.destination_id, -1.0)), reverse=True
    )
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in ranked:
        score = max(best.get(r.source_id, -1.0), best.get(r.destination_id, -1.0))
        item = {"source": r.source, "relationship": r.relationship, "destination": r.destination, "score": score}
        found.setdefault((r.source, r.relationship, r.destination), item)
    return list(found.values())[:limit]


def list_entities(store: GraphStore, project_id: str, ids: ScopeIds, *, limit: int) -> list[dict[str, Any]]:
    return [
        GraphEntityPublic(
            id=e.id,
            name=e.name,
            type=e.type,
            user_id=e.scope.user_id or None,
            agent_id=e.scope.agent_id or None,
            run_id=e.scope.run_id or None,
            created_at=e.created_at,
        ).model_dump(mode="json")
        for e in store.entities(project_id, ids, limit=limit)
    ]


def list_relations(store: GraphStore, project_id: str, ids: ScopeIds, *, limit: int) -> list[dict[str, Any]]:
    rows = []
    for r in store.relations(project_id, ids, limit=limit):
        scope = r.scope
        rows.append(
            GraphRelationPublic(
                source=r.source,
                relationship=r.relationship,
                destination=r.destination,
                source_id=r.source_id,
                destination_id=r.destination_id,
                created_at=r.created_at,
                user_id=(scope.user_id or None) if scope else None,
                agent_id=(scope.agent_id or None) if scope else None,
                run_id=(scope.run_id or None) if scope else None,
            ).model_dump(mode="json")
        )
    return rows


def answer(store: GraphStore, op: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one read the API asked for (``op`` is "search", "entities" or "relations")."""
    project_id, ids, limit = params["project_id"], params["ids"], int(params["limit"])
    if op == "search":
        terms = [(str(name), vector) for name, vector in params["terms"]]
        return search_relations(store, project_id, ids, terms, threshold=float(params["threshold"]), limit=limit)
    if op == "entities":
        return list_entities(store, project_id, ids, limit=limit)
    if op == "relations":
        return list_relations(store, project_id, ids, limit=limit)
    raise ValueError(f"unknown graph read {op!r}")
