"""What only the embedded LanceDB store has: SQL quoting, several writer processes, the text index.

The shared behaviour (CRUD, every filter operator, search, hybrid) is in tests/contract/.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from datetime import timedelta
from pathlib import Path

import pytest

from engram.filters import parse
from engram.vectorstores import lance, lance_upkeep
from engram.vectorstores.lance import LanceConfig, LanceVectorStore, prefilter, to_sql
from tests.contract.helpers import ids, record

DIM = 4
Q = [1.0, 0.0, 0.0, 0.0]


def store(path: Path) -> LanceVectorStore:
    return LanceVectorStore(LanceConfig(path=path, dimensions=DIM))


def test_filter_values_are_quoted_not_injected() -> None:
    assert to_sql(parse({"user_id": "x' OR '1'='1"})) == "(user_id = 'x'' OR ''1''=''1')"
    assert to_sql(parse({"user_id": {"contains": "50%_"}})) == "(user_id LIKE '%50\\%\\_%')"
    assert to_sql(parse({"metadata": {"k": 1}})) is None
    sql, residual = prefilter("p1", parse({"user_id": "a", "categories": "food"}), include_expired=True)
    assert sql == "project_id = 'p1' AND (user_id = 'a')" and residual


def _writer(path: str, worker: int, count: int) -> None:
    s = store(Path(path))
    for i in range(count):
        n = worker * 1000 + i
        s.upsert([record(f"m{n}", "p1", [1, worker, i, 0], f"note {n} about kayaking", user_id=f"user{worker}")])
        if i % 5 == 4:  # rewrite an earlier one, as reconciliation's UPDATE does
            s.upsert(
                [record(f"m{n - 1}", "p1", [1, worker, i, 0], f"note {n - 1} about sailing", user_id=f"user{worker}")]
            )


def test_several_processes_write_at_once_and_hybrid_sees_it_all(tmp_path: Path) -> None:
    store(tmp_path).ping()  # create the table (and its text index) once; the writers then race on commits
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = store(tmp_path)
    assert s.count(project_id="p1") == 45
    assert s.count(project_id="p1", where=parse({"user_id": "user1"})) == 15
    keyword = {"query_text": "sailing", "mode": "hybrid", "alpha": 0.0}
    sailing = s.search(Q, project_id="p1", limit=100, **keyword)  # type: ignore[arg-type]
    assert len([r for r in sailing if "sailing" in r.memory]) == 9  # 3 rewrites in each of 3 writers
    assert all(r.score is not None for r in sailing)


def test_a_table_from_before_hybrid_search_gets_its_text_index(tmp_path: Path) -> None:
    import lancedb

    s = store(tmp_path)
    db = lancedb.connect(str(tmp_path))
    db.create_table("memories", schema=s._schema())  # as an older engram left it: no FTS index
    s.upsert([record("m1", "p1", Q, "Ana rides a unicycle")])
    found = s.search(Q, project_id="p1", limit=1, query_text="unicycle", mode="hybrid", alpha=0)
    assert ids(found) == ["m1"]
    assert any(ix.index_type == "FTS" for ix in db.open_table("memories").list_indices())


def test_optimize_folds_unindexed_rows_in_without_changing_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lance_upkeep, "FTS_UNINDEXED_ROWS_MAX", 3)
    s = store(tmp_path)
    for i in range(8):
        text = f"entry {i} mentions the word quokka" if i == 5 else f"entry {i}"
        s.upsert([record(f"m{i}", "p1", [1, i, 0, 0], text)])
    table = s._open()
    stats = table.index_stats(next(ix.name for ix in table.list_indices() if ix.index_type == "FTS"))
    assert stats.num_indexed_rows >= 6  # folded in along the way
    assert ids(s.search(Q, project_id="p1", limit=3, query_text="quokka", mode="hybrid", alpha=0))[0] == "m5"
    s.optimize()
    assert s.count(project_id="p1") == 8


def test_small_fragments_of_one_write_each_are_compacted_along_the_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every job's write leaves a fragment and every query pays for each one: they must not pile up.
    monkeypatch.setattr(lance_upkeep, "TIERS", (4, 1_048_576))
    monkeypatch.setattr(lance_upkeep, "FANOUT", 4)
    s = store(tmp_path)
    for i in range(30):
        s.upsert([record(f"m{i}", "p1", [1, i, 0, 0], f"entry {i}")])
    assert s._open().stats()["fragment_stats"]["num_fragments"] <= 4 + 4 + 2
    assert s.count(project_id="p1") == 30
    assert ids(s.search([1, 29, 0, 0], project_id="p1", limit=1, mode="vector")) == ["m29"]


def test_old_versions_are_dropped_along_the_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every read lists the table's versions to find the latest: one per commit must not pile up.
    monkeypatch.setattr(lance_upkeep, "VERSIONS_MAX", 8)
    monkeypatch.setattr(lance_upkeep, "VERSIONS_KEPT_FOR", timedelta(0))
    monkeypatch.setattr(lance_upkeep, "VERSIONS_CLEANUP_EVERY", timedelta(0))
    s = store(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # LanceDB's note that 0 drops all but the latest
        for i in range(40):
            s.upsert([record(f"m{i}", "p1", [1, i, 0, 0], f"entry {i} about quokkas")])
    assert lance_upkeep.version_count(s._dataset_dir()) <= 8 + 2
    assert s.count(project_id="p1") == 40
    assert ids(s.search([1, 39, 0, 0], project_id="p1", limit=1, mode="vector")) == ["m39"]


def test_a_read_whose_version_was_cleaned_up_reads_the_latest(tmp_path: Path) -> None:
    import lancedb

    writer = store(tmp_path)
    for i in range(5):
        writer.upsert([record(f"m{i}", "p1", [1, i, 0, 0], f"entry {i}")])
    reader = store(tmp_path)
    # A handle that never looks for newer versions stands for a query that began just before the cleanup.
    reader._table = lancedb.connect(str(tmp_path)).open_table("memories")
    writer.upsert([record("m5", "p1", [1, 5, 0, 0], "entry 5")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        writer._open().optimize(cleanup_older_than=timedelta(0))  # its files are gone now
    assert ids(reader.search([1, 5, 0, 0], project_id="p1", limit=1, mode="vector")) == ["m5"]
    assert reader.count(project_id="p1") == 6


def test_a_native_search_whose_version_was_cleaned_up_reads_the_latest(tmp_path: Path) -> None:
    writer = store(tmp_path)
    for i in range(5):
        writer.upsert([record(f"m{i}", "p1", [1, i, 0, 0], f"entry {i}")])
    reader = store(tmp_path)
    reader.search_with_pylance()
    assert ids(reader.search([1, 4, 0, 0], project_id="p1", limit=1, mode="vector")) == ["m4"]
    native = reader._native_reader()
    assert native is not None
    stale = native.latest()
    writer.upsert([record("m5", "p1", [1, 5, 0, 0], "entry 5 about kayaking")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        writer._open().optimize(cleanup_older_than=timedelta(0))  # the stale version's files are gone
    checked = native.latest
    # The first query stands for one that checked the version just before the cleanup removed it.
    calls = iter([stale])
    native.latest = lambda: next(calls, None) or checked()  # type: ignore[method-assign]
    assert ids(reader.search([1, 5, 0, 0], project_id="p1", limit=1, mode="vector")) == ["m5"]
    calls = iter([stale])
    found = reader.search([1, 5, 0, 0], project_id="p1", limit=1, query_text="kayaking", mode="hybrid", alpha=0)
    assert ids(found) == ["m5"]


def test_compaction_is_due_a_tier_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lance_upkeep, "TIERS", (10, 100, 1000))
    monkeypatch.setattr(lance_upkeep, "FANOUT", 2)
    target = lance_upkeep.compaction_target
    assert target([5000, 1, 2]) is None  # two fresh fragments: not yet
    assert target([5000, 1, 2, 3]) == 10  # three: merged into 10-row fragments
    assert target([5000, 10, 10, 10, 3]) == 100  # three of the first tier: merged into the next
    assert target([5000, 10, 10, 10, 100, 200, 300, 1, 2, 3]) == 1000  # the largest tier due goes first
    assert target([5000, 4000, 3000, 2000]) is None  # at the top tier fragments stay


def test_upkeep_never_rewrites_a_settled_fragment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With Lance's default target every compaction rewrote the whole table (159 MB at 100k memories).
    monkeypatch.setattr(lance_upkeep, "TIERS", (4, 16, 1_048_576))
    monkeypatch.setattr(lance_upkeep, "FANOUT", 3)
    s = store(tmp_path)
    s.upsert([record(f"bulk{i}", "p1", [0, 1, i, 0], f"bulk {i}") for i in range(40)])
    settled = _data_files(tmp_path)
    for i in range(30):
        s.upsert([record(f"m{i}", "p1", [1, i, 0, 0], f"entry {i}")])
    assert settled <= _data_files(tmp_path)  # the 40-row fragment's file was never rewritten
    assert s._open().stats()["fragment_stats"]["num_fragments"] <= 1 + 3 * 3  # yet the small ones were merged
    assert s.count(project_id="p1") == 70
    assert ids(s.search([1, 29, 0, 0], project_id="p1", limit=1, mode="vector")) == ["m29"]


def _data_files(path: Path) -> set[str]:
    import lance as pylance

    return {
        f.path
        for fragment in pylance.dataset(str(path / "memories.lance")).get_fragments()
        for f in fragment.data_files()
    }


def test_a_failing_upkeep_never_fails_the_write_and_waits_before_trying_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken(*args: object, **kwargs: object) -> set[str]:
        calls.append(1)
        raise RuntimeError("Not found: a data file another process's cleanup removed")

    monkeypatch.setattr(lance_upkeep, "upkeep", broken)
    s = store(tmp_path)
    for i in range(5):
        s.upsert([record(f"m{i}", "p1", [1, i, 0, 0], f"entry {i}")])
    assert s.count(project_id="p1") == 5  # every write committed
    assert len(calls) == 1  # and upkeep was left alone after it failed once


def test_new_tables_use_the_storage_format_that_reads_scattered_rows_faster(tmp_path: Path) -> None:
    import lance as pylance

    store(tmp_path).ping()
    assert pylance.dataset(str(tmp_path / "memories.lance")).data_storage_version == lance.DATA_STORAGE_VERSION


def test_a_writes_rows_are_stored_scope_by_scope_and_stay_so_through_compaction(tmp_path: Path) -> None:
    import lance as pylance

    s = store(tmp_path)
    for batch in range(2):  # interleaved users, as a bulk load over many users writes them
        s.upsert([record(f"m{batch}-{i}", "p1", [1, i, 0, 0], f"note {i}", user_id=f"u{i % 4}") for i in range(12)])
    s.optimize()
    table = pylance.dataset(str(tmp_path / "memories.lance"))
    assert len(table.get_fragments()) == 1
    owners = table.to_table(columns=["user_id"])["user_id"].to_pylist()
    assert owners == sorted(owners[:12]) + sorted(owners[12:])  # each write's rows in scope order, in one fragment
    assert s.count(project_id="p1", where=parse({"user_id": "u2"})) == 6


@pytest.mark.parametrize("rank_here_max_rows", [lance.RANK_HERE_MAX_ROWS, 10])
def test_native_searches_answer_as_lancedb_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rank_here_max_rows: int
) -> None:
    # The API's path ranks a scope of up to RANK_HERE_MAX_ROWS memories itself (each user here has 60), a larger
    # one through Lance's vector search: both answer as lancedb does, scores to float32 rounding.
    monkeypatch.setattr(lance, "RANK_HERE_MAX_ROWS", rank_here_max_rows)
    import random

    rng = random.Random(7)
    words = ["violin", "cello", "kayak", "sailing", "tea", "coffee", "lisbon", "vienna", "cat", "dog", "garden"]
    rows = [
        record(
            f"m{i:03d}",
            "p1",
            [rng.uniform(-1, 1) for _ in range(DIM)],
            " ".join(rng.sample(words, 3)),
            user_id=f"u{i % 5}",
            metadata={"n": i},
            categories=[rng.choice(["music", "travel"])],
        )
        for i in range(300)
    ]
    for start in range(0, len(rows), 60):  # several writes, interleaved users
        store(tmp_path).upsert(rows[start : start + 60])
    rewritten = record("m007", "p1", [1, 0, 0, 0], "a violin maker in vienna", user_id="u2")
    store(tmp_path).upsert([rewritten])
    plain, native = store(tmp_path), store(tmp_path)
    native.search_with_pylance()
    calls: list[dict[str, object]] = []
    for i in range(40):
        user, query = f"u{i % 5}", " ".join(rng.sample(words, 2))
        calls += [
            {"where": parse({"user_id": user}), "query_text": query, "limit": 10},
            {"where": parse({"user_id": user}), "query_text": query, "limit": 3, "alpha": 0.0},
            {"where": parse({"user_id": user}), "query_text": query, "limit": 5, "threshold": 0.2},
            {"where": parse({"user_id": user, "categories": "music"}), "query_text": query, "limit": 5},
            {"where": parse({"user_id": user}), "limit": 4, "include_vectors": True},
        ]
    for call in calls:
        vector = [rng.uniform(-1, 1) for _ in range(DIM)]
        found = [s.search(vector, project_id="p1", **call) for s in (plain, native)]  # type: ignore[arg-type]
        answers = [[(r.id, r.memory, r.vector, r.metadata, r.categories) for r in f] for f in found]
        assert answers[0] == answers[1], call
        assert [r.score for r in found[1]] == pytest.approx([r.score for r in found[0]], abs=1e-6), call
        assert answers[0] or "threshold" in call


def test_concurrent_appends_all_land_and_a_bad_one_fails_alone(tmp_path: Path) -> None:
    # Appends of one process's threads share commits (engram/batching.py); each call still answers for its own rows.
    import threading

    s = store(tmp_path)
    s.insert([record("seed", "p1", Q)])  # the table exists before the race
    barrier = threading.Barrier(9)
    errors: dict[int, BaseException] = {}

    def append(worker: int) -> None:
        vector = [1.0, float(worker), 0.0] if worker == 8 else [1.0, float(worker), 0.0, 0.0]  # 8: one short
        barrier.wait()
        try:
            s.insert([record(f"w{worker}-{i}", "p1", vector, user_id=f"u{worker}") for i in range(3)])
        except Exception as exc:
            errors[worker] = exc

    threads = [threading.Thread(target=append, args=(w,)) for w in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert list(errors) == [8]
    assert s.count(project_id="p1") == 1 + 8 * 3
    assert {r.id for r in s.list(project_id="p1", limit=100)} == {"seed"} | {
        f"w{w}-{i}" for w in range(8) for i in range(3)}


def test_nearest_each_ranked_here_answers_as_lances_vector_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reconcile's lookup ranks a small filter's rows itself (lance.RANK_HERE_MAX_ROWS); past it, Lance ranks.
    import random

    rng = random.Random(11)
    rows = [
        record(f"m{i:03d}", "p1", [rng.uniform(-1, 1) for _ in range(DIM)], f"fact {i}", user_id=f"u{i % 4}",
               metadata={"n": i})
        for i in range(200)
    ]
    for start in range(0, len(rows), 50):
        store(tmp_path).insert(rows[start : start + 50])
    s = store(tmp_path)
    queries = [[[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(n)] for n in (1, 3, 5) for _ in range(6)]

    def answers() -> tuple[list[object], list[float]]:
        found = [
            s.nearest_each(vectors, project_id="p1", where=parse({"user_id": user}), limit=5, include_vectors=True)
            for vectors, user in zip(queries, ["u0", "u1", "u2", "u3"] * len(queries), strict=False)
        ]
        records = [r for per_query in found for per_fact in per_query for r in per_fact]
        shape = [[[r.id for r in per_fact] for per_fact in per_query] for per_query in found]
        return [shape, [(r.memory, r.vector, r.metadata) for r in records]], [r.score or 0.0 for r in records]

    here, here_scores = answers()
    monkeypatch.setattr(lance, "RANK_HERE_MAX_ROWS", 10)  # every user has 50 memories: Lance ranks them
    by_lance, lance_scores = answers()
    assert by_lance == here
    assert here_scores == pytest.approx(lance_scores, abs=1e-5)  # float32 cosine, summed in another order
    assert len(here_scores) == 5 * sum(len(q) for q in queries)


def test_the_store_asks_lance_for_the_runtime_threads_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lance's runtime reads TOKIO_WORKER_THREADS when a process first uses it; an operator's own value wins.
    monkeypatch.delenv("TOKIO_WORKER_THREADS", raising=False)
    s = LanceVectorStore(LanceConfig(path=tmp_path / "a", dimensions=DIM, runtime_threads=1))
    s.insert([record("m1", "p1", Q)])
    assert os.environ["TOKIO_WORKER_THREADS"] == "1"
    monkeypatch.setenv("TOKIO_WORKER_THREADS", "3")
    other = LanceVectorStore(LanceConfig(path=tmp_path / "b", dimensions=DIM, runtime_threads=1))
    other.insert([record("m1", "p1", Q)])
    assert os.environ["TOKIO_WORKER_THREADS"] == "3"
