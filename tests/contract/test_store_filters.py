"""Contract: every filter operator answers exactly as ``engram.filters.matches`` (the reference).

The records are chosen to hit the places stores get wrong: empty ids, edge whitespace, case,
SQL/LIKE/wildcard characters, microsecond timestamps, empty categories, metadata lists.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engram import filters
from engram.filters import And, eq
from engram.ports import MemoryRecord, VectorStore
from tests.contract.helpers import ids, record


def corpus(project: str) -> list[MemoryRecord]:
    return [
        record(
            "m1",
            project,
            [1, 0, 0, 0],
            "Ana likes sushi",
            app_id="app1",
            categories=["food", "travel"],
            metadata={"kind": "a", "n": 1, "tags": ["x", "y"]},
            minutes=1,
        ),
        record(
            "m2",
            project,
            [0.9, 0.1, 0, 0],
            user_id="ana",
            agent_id="bot",
            run_id="r1",
            metadata={"kind": "b", "n": 5},
            minutes=2,
        ),
        record(
            "m3",
            project,
            [0.8, 0.2, 0.1, 0],
            user_id="bob",
            agent_id="bot",
            app_id="app2",
            categories=["food"],
            minutes=3,
        ),
        record(
            "m4",
            project,
            [0.7, 0.3, 0.2, 0],
            user_id="Ana Maria",
            categories=["Food"],
            metadata={"kind": "A"},
            minutes=4,
        ),
        record(
            "m5",
            project,
            [0.6, 0.4, 0.3, 0.1],
            user_id="o'neil_100%",
            agent_id="x*y?",
            categories=["a|b"],
            created_at=datetime(2026, 1, 1, 0, 5, 0, 123456, tzinfo=UTC),
            metadata={"n": 2.5},
        ),
        record(
            "m6",
            project,
            [0.5, 0.5, 0.4, 0.2],
            user_id=" ana ",
            run_id="r|1",
            categories=["travel"],
            metadata={"kind": None},
            minutes=6,
        ),
        record(
            "m7",
            project,
            [0.4, 0.6, 0.5, 0.3],
            user_id="",
            agent_id="solo",
            app_id="app1",
            metadata={"tags": ["y"]},
            minutes=7,
        ),
    ]


T5 = "2026-01-01T00:05:00.123456Z"
FILTERS: list[Any] = [
    # scalar ids: eq / ne / in / exists / contains / icontains / ranges
    {"user_id": "ana"},
    {"user_id": ""},
    {"agent_id": ""},
    {"user_id": " ana "},
    {"user_id": "Ana Maria"},
    {"user_id": "o'neil_100%"},
    {"agent_id": "*"},
    {"user_id": "*"},
    {"agent_id": {"ne": "bot"}},
    {"user_id": {"ne": ""}},
    {"user_id": {"in": ["ana", "bob"]}},
    {"user_id": {"in": ["", "bob"]}},
    {"user_id": {"in": []}},
    {"user_id": {"contains": "an"}},
    {"user_id": {"contains": "_100%"}},
    {"user_id": {"contains": "'"}},
    {"user_id": {"contains": ""}},
    {"agent_id": {"contains": "*"}},
    {"run_id": {"contains": "|"}},
    {"user_id": {"icontains": "ANA"}},
    {"user_id": {"gt": "b"}},
    {"user_id": {"lte": "ana"}},
    {"id": "m3"},
    {"id": {"in": ["m1", "m7", "nope"]}},
    {"id": {"ne": "m1"}},
    {"app_id": "app1"},
    {"app_id": {"ne": ""}},
    {"app_id": "*"},
    # dates, to the microsecond
    {"created_at": {"gt": "2026-01-01T00:03:00Z"}},
    {"created_at": {"gte": T5}},
    {"created_at": {"gt": T5}},
    {"created_at": {"lt": T5}},
    {"created_at": {"lte": "2026-01-01T00:02:00"}},
    {"created_at": {"eq": T5}},
    {"created_at": {"ne": T5}},
    {"created_at": {"in": [T5, "2026-01-01T00:01:00Z"]}},
    {"updated_at": {"gte": 1767225840}},  # a Unix timestamp: 2026-01-01T00:04:00Z
    {"created_at": "*"},
    # categories (a list: any element may satisfy it)
    {"categories": "food"},
    {"categories": {"contains": "food"}},
    {"categories": {"eq": "travel"}},
    {"categories": {"in": ["travel", "Food"]}},
    {"categories": {"ne": "food"}},
    {"categories": {"icontains": "FOO"}},
    {"categories": "*"},
    {"categories": "a|b"},
    {"categories": ""},
    # metadata (JSON, checked in Python by every store today)
    {"metadata": {"kind": "a"}},
    {"metadata": {"kind": {"ne": "a"}}},
    {"metadata": {"kind": {"in": ["a", "b"]}}},
    {"metadata": {"kind": {"icontains": "A"}}},
    {"metadata": {"kind": "*"}},
    {"metadata.n": {"gt": 2}},
    {"metadata.n": {"lte": 2.5}},
    {"metadata": {"tags": "x"}},
    {"metadata.tags": {"in": ["y"]}},
    # boolean structure, translated and not
    {"OR": [{"user_id": "bob"}, {"metadata": {"kind": "a"}}]},
    {"OR": [{"user_id": "bob"}, {"categories": "travel"}]},
    {"NOT": {"user_id": "ana"}},
    {"NOT": [{"categories": "food"}]},
    {"NOT": [{"user_id": "ana"}, {"agent_id": "bot"}]},
    {"AND": [{"user_id": "ana"}, {"NOT": {"agent_id": "bot"}}]},
    {"NOT": {"OR": [{"user_id": "ana"}, {"created_at": {"gte": "2026-01-01T00:04:00Z"}}]}},
    {"AND": [{"app_id": "app1"}, {"OR": [{"metadata": {"kind": "a"}}, {"agent_id": "solo"}]}]},
    {"user_id": "ana", "categories": "food", "metadata": {"n": 1}},
]


@pytest.fixture
def loaded(store: VectorStore, project: str) -> tuple[VectorStore, str, list[MemoryRecord]]:
    records = corpus(project)
    store.upsert(records)
    return store, project, records


@pytest.mark.parametrize("raw", FILTERS, ids=[str(f) for f in FILTERS])
def test_filter_answers_like_the_reference(raw: Any, loaded: tuple[VectorStore, str, list[MemoryRecord]]) -> None:
    store, project, records = loaded
    where = filters.parse(raw)
    expected = [r for r in records if filters.matches(where, r)]
    newest_first = sorted(expected, key=lambda r: (r.created_at, r.id), reverse=True)
    assert ids(store.list(project_id=project, where=where, limit=100)) == ids(newest_first)
    assert store.count(project_id=project, where=where) == len(expected)
    query = [1.0, 0.0, 0.0, 0.0]
    found = store.search(query, project_id=project, where=where, limit=100)
    assert set(ids(found)) == set(ids(expected))
    best_two = store.search(query, project_id=project, where=where, limit=2)
    assert ids(best_two) == ids(found[:2])


def test_reconciliation_scope_filter(loaded: tuple[VectorStore, str, list[MemoryRecord]]) -> None:
    store, project, _ = loaded
    exact = And((eq("user_id", "ana"), eq("agent_id", ""), eq("run_id", "")))  # engram.stages.reconcile.exact_scope
    assert ids(store.search([1, 0, 0, 0], project_id=project, where=exact, limit=5)) == ["m1"]


def test_a_python_checked_filter_still_finds_far_matches(store: VectorStore, project: str) -> None:
    """Only the farthest of many memories matches: stores must look past the first candidates."""
    many = [record(f"n{i}", project, [1, i / 100, 0, 0], metadata={"rare": i == 79}) for i in range(80)]
    store.upsert(many)
    where = filters.parse({"metadata": {"rare": True}})
    assert ids(store.search([1, 0, 0, 0], project_id=project, where=where, limit=1)) == ["n79"]
