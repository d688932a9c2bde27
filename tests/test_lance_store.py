"""The embedded LanceDB store, including several processes writing at once."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engram.ids import content_hash
from engram.ports import MemoryRecord
from engram.scope import Scope
from engram.vectorstores.lance import LanceConfig, LanceVectorStore, where_clause

DIM = 4


def store(path: Path) -> LanceVectorStore:
    return LanceVectorStore(LanceConfig(path=path, dimensions=DIM))


def record(i: int, scope: Scope, vector: list[float], text: str | None = None, **metadata: object) -> MemoryRecord:
    text = text or f"memory {i}"
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i)
    return MemoryRecord(
        id=f"m{i}", memory=text, hash=content_hash(text), scope=scope, vector=vector,
        created_at=at, updated_at=at, metadata=dict(metadata),
    )


ANA = Scope("p1", user_id="ana")
BOB = Scope("p1", user_id="bob")


def test_upsert_search_scope_and_scores(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.upsert([record(1, ANA, [1, 0, 0, 0]), record(2, ANA, [0.7, 0.7, 0, 0]), record(3, BOB, [1, 0, 0, 0])])
    found = s.search([1, 0, 0, 0], ANA.as_filter(), limit=5)
    assert [r.id for r in found] == ["m1", "m2"]
    assert found[0].score == pytest.approx(1.0, abs=1e-5)
    assert found[1].score == pytest.approx(0.7071, abs=1e-3)
    assert s.search([1, 0, 0, 0], ANA.as_filter(), limit=5, threshold=0.9)[0].id == "m1"
    assert len(s.search([1, 0, 0, 0], ANA.as_filter(), limit=5, threshold=0.9)) == 1


def test_upsert_replaces_by_id_and_delete(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.upsert([record(1, ANA, [1, 0, 0, 0], "old")])
    s.upsert([record(1, ANA, [0, 1, 0, 0], "new")])
    assert s.count({"project_id": "p1"}) == 1
    got = s.get("m1", "p1")
    assert got is not None and got.memory == "new" and got.vector[1] == pytest.approx(1.0)
    assert s.get("m1", "other-project") is None
    s.delete(["m1", "does-not-exist"])
    assert s.get("m1", "p1") is None


def test_list_newest_first_with_metadata_filter_and_paging(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.upsert([record(i, ANA, [1, 0, 0, i / 10], kind="a" if i % 2 else "b") for i in range(1, 7)])
    assert [r.id for r in s.list({"user_id": "ana"}, limit=3)] == ["m6", "m5", "m4"]
    assert [r.id for r in s.list({"user_id": "ana"}, limit=3, offset=3)] == ["m3", "m2", "m1"]
    assert [r.id for r in s.list({"user_id": "ana", "metadata": {"kind": "a"}}, limit=10)] == ["m5", "m3", "m1"]
    assert s.count({"user_id": "ana", "metadata": {"kind": "b"}}) == 3
    hits = s.search([1, 0, 0, 0], {"user_id": "ana", "metadata": {"kind": "b"}}, limit=10)
    assert {r.id for r in hits} == {"m2", "m4", "m6"}


def test_filter_values_are_quoted_not_injected() -> None:
    assert where_clause({"user_id": "x' OR '1'='1"}) == "user_id = 'x'' OR ''1''=''1'"
    with pytest.raises(ValueError, match="cannot filter"):
        where_clause({"memory; drop": "x"})


def test_dimension_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    store(tmp_path).ping()
    with pytest.raises(ValueError, match="4-d vectors"):
        LanceVectorStore(LanceConfig(path=tmp_path, dimensions=8)).ping()


def _writer(path: str, worker: int, count: int) -> None:
    s = store(Path(path))
    scope = Scope("p1", user_id=f"user{worker}")
    for i in range(count):
        s.upsert([record(worker * 1000 + i, scope, [1, worker, i, 0])])


def test_several_processes_write_at_once(tmp_path: Path) -> None:
    store(tmp_path).ping()  # create the table once; the writers then race on commits
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = store(tmp_path)
    assert s.count({"project_id": "p1"}) == 45
    assert s.count({"user_id": "user1"}) == 15
