"""Contract: vector search (score, order, threshold, limit) and hybrid search (keyword + vector)."""

from __future__ import annotations

import pytest

from engram import filters
from engram.ports import VectorStore
from tests.contract.conftest import StoreFactory
from tests.contract.helpers import ids, record


def test_vector_search_orders_by_cosine_with_scores(store: VectorStore, project: str) -> None:
    store.upsert(
        [
            record("far", project, [0, 0, 1, 0]),
            record("same", project, [2, 0, 0, 0]),  # cosine ignores length
            record("near", project, [0.7, 0.7, 0, 0]),
            record("opposite", project, [-1, 0, 0, 0]),
        ]
    )
    found = store.search([1, 0, 0, 0], project_id=project, limit=10, include_vectors=True)
    assert ids(found) == ["same", "near", "far", "opposite"]
    assert [r.score for r in found] == pytest.approx([1.0, 0.7071, 0.0, -1.0], abs=1e-3)
    assert found[0].vector == pytest.approx([2, 0, 0, 0])  # callers compare vectors (reconciliation)
    plain = store.search([1, 0, 0, 0], project_id=project, limit=10)
    assert ids(plain) == ids(found) and all(r.vector == [] for r in plain)  # not read back unless asked


def test_threshold_and_limit(store: VectorStore, project: str) -> None:
    store.upsert([record(f"m{i}", project, [1, i / 4, 0, 0]) for i in range(8)])
    assert ids(store.search([1, 0, 0, 0], project_id=project, limit=3)) == ["m0", "m1", "m2"]
    above = store.search([1, 0, 0, 0], project_id=project, limit=10, threshold=0.85)
    assert ids(above) == ["m0", "m1", "m2"] and all((r.score or 0) >= 0.85 for r in above)
    assert store.search([1, 0, 0, 0], project_id=project, limit=10, threshold=1.01) == []
    assert store.search([1, 0, 0, 0], project_id=project, limit=0) == []
    assert store.search([1, 0, 0, 0], project_id="proj_empty", limit=5) == []


def test_nearest_each_answers_as_one_search_per_vector(store: VectorStore, project: str) -> None:
    store.upsert(
        [record(f"a{i}", project, [1, i / 3, 0, 0]) for i in range(4)]
        + [record(f"b{i}", project, [0, 1, i / 3, 0]) for i in range(4)]
        + [record("bob", project, [1, 0, 0, 0], user_id="bob")]
        + [record("gone", project, [1, 0, 0, 0], expiration_date="2000-01-01")]
    )
    ana = filters.parse({"user_id": "ana"})
    queries = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    each = store.nearest_each(queries, project_id=project, where=ana, limit=3, include_vectors=True)
    assert len(each) == len(queries)
    for query, found in zip(queries, each, strict=True):
        alone = store.search(query, project_id=project, where=ana, limit=3, mode="vector", include_vectors=True)
        assert ids(found) == ids(alone)
        assert [r.score for r in found] == pytest.approx([r.score for r in alone], abs=1e-5)
        assert all(r.vector for r in found)
    assert ids(each[0])[0] == "a0" and ids(each[1])[0] == "b0"
    assert store.nearest_each([], project_id=project, where=ana, limit=3) == []
    plain = store.nearest_each(queries[:2], project_id=project, where=ana, limit=2)
    assert [ids(p) for p in plain] == [ids(e[:2]) for e in each[:2]] and all(r.vector == [] for p in plain for r in p)


@pytest.fixture
def texts(store: VectorStore, project: str) -> VectorStore:
    """The query vector points at ``hiking``; only ``zeppelin`` contains the query's rare word."""
    store.upsert(
        [
            record("hiking", project, [1, 0, 0, 0], "Ana loves hiking in the mountains", minutes=1),
            record("coffee", project, [0.8, 0.6, 0, 0], "Ana drinks coffee every morning", minutes=2),
            record("zeppelin", project, [0, 0, 1, 0], "Ana once flew in a zeppelin over Berlin", minutes=3),
            record("bob", project, [0, 0, 0.9, 0.1], "Bob also flew a zeppelin", user_id="bob", minutes=4),
        ]
    )
    return store


QUERY = [1.0, 0.0, 0.0, 0.0]
ANA = filters.parse({"user_id": "ana"})


def test_hybrid_keyword_side_finds_the_rare_word(texts: VectorStore, project: str) -> None:
    keyword = texts.search(QUERY, project_id=project, where=ANA, limit=3, query_text="zeppelin", mode="hybrid", alpha=0)
    assert ids(keyword)[0] == "zeppelin" and keyword[0].score == pytest.approx(1.0)
    balanced = texts.search(
        QUERY, project_id=project, where=ANA, limit=3, query_text="zeppelin", mode="hybrid", alpha=0.5
    )
    assert "zeppelin" in ids(balanced)[:2]
    assert "bob" not in ids(balanced)  # filters hold in hybrid search too


def test_hybrid_with_alpha_one_ranks_like_vector_search(texts: VectorStore, project: str) -> None:
    vector = texts.search(QUERY, project_id=project, where=ANA, limit=3)
    fused = texts.search(QUERY, project_id=project, where=ANA, limit=3, query_text="zeppelin", mode="hybrid", alpha=1)
    assert ids(fused) == ids(vector) == ["hiking", "coffee", "zeppelin"]


def test_hybrid_scores_are_fused_into_the_unit_interval(texts: VectorStore, project: str) -> None:
    found = texts.search(QUERY, project_id=project, limit=10, query_text="Ana flew zeppelin", mode="hybrid", alpha=0.5)
    scores = [r.score or 0.0 for r in found]
    assert set(ids(found)) == {"hiking", "coffee", "zeppelin", "bob"}
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert texts.search(QUERY, project_id=project, limit=1, query_text="zeppelin", mode="hybrid", alpha=0.3)
    # The threshold is on cosine similarity: the keyword-only hits (cosine 0) go, however well they fuse.
    above = texts.search(QUERY, project_id=project, limit=10, query_text="zeppelin", mode="hybrid", threshold=0.4)
    assert set(ids(above)) == {"hiking", "coffee"} and all(r.vector == [] for r in above)


def test_an_irrelevant_query_finds_nothing_above_a_threshold_in_either_mode(texts: VectorStore, project: str) -> None:
    """Fused scores are relative (the best candidate is near 1 however poor): the threshold must not use them.
    Here the best candidate, bob, has cosine 0.11 and no keyword match."""
    query = [0.0, 0.0, 0.0, 1.0]
    assert texts.search(query, project_id=project, limit=5, threshold=0.3) == []
    assert texts.search(query, project_id=project, limit=5, threshold=0.3, query_text="quantum", mode="hybrid") == []
    loose = texts.search(query, project_id=project, limit=5, threshold=0.1, query_text="quantum", mode="hybrid")
    assert ids(loose) == ["bob"]


def test_mode_defaults_come_from_the_store_config(new_store: StoreFactory, project: str) -> None:
    store = new_store(search_mode="hybrid", hybrid_alpha=0.0)
    store.upsert([record("hiking", project, [1, 0, 0, 0], "hiking"), record("z", project, [0, 1, 0, 0], "zeppelin")])
    assert ids(store.search(QUERY, project_id=project, limit=1, query_text="zeppelin")) == ["z"]  # hybrid, keyword
    by_vector = store.search(QUERY, project_id=project, limit=2)  # no text: vector search, cosine scores
    assert ids(by_vector) == ["hiking", "z"] and by_vector[1].score == pytest.approx(0.0, abs=1e-6)
    assert ids(store.search(QUERY, project_id=project, limit=1, query_text="zeppelin", mode="vector")) == ["hiking"]


def test_hybrid_needs_text_and_a_sane_alpha(store: VectorStore, project: str) -> None:
    with pytest.raises(ValueError, match="query_text"):
        store.search(QUERY, project_id=project, limit=1, mode="hybrid")
    with pytest.raises(ValueError, match="alpha"):
        store.search(QUERY, project_id=project, limit=1, query_text="x", mode="hybrid", alpha=1.5)


def test_hybrid_sees_rewritten_and_deleted_text(new_store: StoreFactory, project: str) -> None:
    writer, reader = new_store(), new_store()
    writer.upsert([record("m1", project, [1, 0, 0, 0], "Ana plays the violin")])
    assert ids(reader.search(QUERY, project_id=project, limit=5, query_text="violin", mode="hybrid", alpha=0))
    writer.upsert([record("m1", project, [1, 0, 0, 0], "Ana plays the cello")])
    writer.upsert([record("m2", project, [0, 1, 0, 0], "a violin maker")])
    kw = reader.search(QUERY, project_id=project, limit=1, query_text="violin", mode="hybrid", alpha=0)
    assert ids(kw) == ["m2"]
    writer.delete(["m2"], project_id=project)
    kw = reader.search(QUERY, project_id=project, limit=5, query_text="violin maker", mode="hybrid", alpha=0)
    assert "m2" not in ids(kw)
