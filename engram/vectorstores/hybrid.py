"""Hybrid search shared by every store: which mode a call means, and how two rankings are fused.

Fusion is relative score fusion, the same scheme Weaviate runs server-side (``relativeScoreFusion``):
each ranking's scores are min-max normalised over its own candidates, a memory missing from one
ranking gets 0 there, and the fused score is ``alpha * vector + (1 - alpha) * keyword``. So a
score is always in [0, 1] and ``alpha`` means the same thing in every store.

A fused score is relative to the other candidates (the best one is near 1 however poor it is), so a
``threshold`` never applies to it: in every mode it is a floor on the memory's cosine similarity to
the query, the one absolute measure of relevance there is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from engram.ports import MemoryRecord, SearchMode, VectorStore

# Candidates each ranking contributes before fusion, per result asked for (and at least the minimum):
# enough that a memory ranked modestly by both rankings can still surface.
CANDIDATES_PER_RESULT = 5
MIN_CANDIDATES = 50


def resolve_mode(mode: SearchMode | None, query_text: str | None, default: SearchMode) -> SearchMode:
    """The mode a search runs in. A default of hybrid quietly means vector when there is no text
    (reconciliation searches by vector only); asking for hybrid explicitly without text is a bug."""
    has_text = bool(query_text and query_text.strip())
    if mode is None:
        return default if has_text else "vector"
    if mode not in ("vector", "hybrid"):
        raise ValueError(f"unknown search mode {mode!r}; use 'vector' or 'hybrid'")
    if mode == "hybrid" and not has_text:
        raise ValueError("hybrid search needs query_text")
    return mode


def resolve_alpha(alpha: float | None, default: float) -> float:
    value = default if alpha is None else alpha
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"alpha must be between 0 (keyword only) and 1 (vector only), got {value}")
    return value


def candidates_for(limit: int) -> int:
    return max(limit * CANDIDATES_PER_RESULT, MIN_CANDIDATES)


def _normalised(scores: Mapping[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high - low <= 1e-12:
        return dict.fromkeys(scores, 1.0)  # one candidate, or all tied: each is the best of its ranking
    return {key: (value - low) / (high - low) for key, value in scores.items()}


def relative_score_fusion(
    vector_scores: Mapping[str, float], keyword_scores: Mapping[str, float], alpha: float
) -> dict[str, float]:
    """Fused score in [0, 1] for every key of either ranking."""
    vec, kw = _normalised(vector_scores), _normalised(keyword_scores)
    return {
        key: min(1.0, max(0.0, alpha * vec.get(key, 0.0) + (1.0 - alpha) * kw.get(key, 0.0))) for key in {**vec, **kw}
    }


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0 for an empty or zero vector."""
    x, y = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    if x.shape != y.shape or norm == 0.0:
        return 0.0
    return float(x @ y) / norm


def nearest_one_by_one(
    store: VectorStore,
    vectors: Sequence[Sequence[float]],
    *,
    project_id: str,
    where: object,
    limit: int,
    include_vectors: bool,
) -> list[list[MemoryRecord]]:
    """``nearest_each`` as one vector search per vector, for stores (or filters) with no batched query."""
    return [
        store.search(v, project_id=project_id, where=where, limit=limit, mode="vector", include_vectors=include_vectors)
        for v in vectors
    ]
