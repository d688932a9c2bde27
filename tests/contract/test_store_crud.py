"""Contract: writes, reads by id, projects, counts and lists. Every store, same answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from engram.filters import parse
from engram.ports import VectorStore
from tests.contract.conftest import StoreFactory
from tests.contract.helpers import T0, ids, record


def test_insert_then_get_round_trips_every_field(store: VectorStore, project: str) -> None:
    memory_id = str(uuid.uuid4())  # real ids are UUIDs; "m1"-style ids are covered everywhere else
    at = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    original = record(
        memory_id,
        project,
        [0.5, 0.5, 0.5, 0.5],
        "Ana moved to Lisbon",
        user_id="ana",
        agent_id="travel-bot",
        run_id="run 7",
        created_at=at,
        updated_at=at + timedelta(seconds=1),
        metadata={"source": "chat", "n": 3, "nested": {"tags": ["a", "b"]}, "ok": True},
        app_id="app-1",
        categories=["travel", "personal_details"],
        expiration_date="2999-12-31",
        immutable=True,
    )
    store.upsert([original])
    got = store.get(memory_id, project)
    assert got is not None
    assert (got.id, got.memory, got.hash, got.scope) == (original.id, original.memory, original.hash, original.scope)
    assert (got.created_at, got.updated_at) == (original.created_at, original.updated_at)
    assert got.metadata == original.metadata and got.app_id == "app-1"
    assert got.categories == ["travel", "personal_details"]
    assert got.expiration_date == "2999-12-31" and got.immutable is True
    assert got.vector == pytest.approx(original.vector)


def test_upsert_by_id_replaces_and_update_changes_fields(store: VectorStore, project: str) -> None:
    store.upsert([record("m1", project, [1, 0, 0, 0], "old text", categories=["a"])])
    store.upsert([record("m1", project, [0, 1, 0, 0], "new text", categories=[], metadata={"v": 2})])
    assert store.count(project_id=project) == 1
    got = store.get("m1", project)
    assert got is not None and got.memory == "new text" and got.categories == [] and got.metadata == {"v": 2}
    assert got.vector == pytest.approx([0, 1, 0, 0])
    assert ids(store.search([0, 1, 0, 0], project_id=project, limit=5)) == ["m1"]


def test_inserted_memories_are_found_like_upserted_ones_and_upsert_over_them(store: VectorStore, project: str) -> None:
    # insert: new ids only (a plan's first application); what it writes must read back as upsert's does.
    store.insert([record("m1", project, [1, 0, 0, 0], "Ana keeps bees"), record("m2", project, [0, 1, 0, 0])])
    store.insert([])
    got = store.get("m1", project)
    assert got is not None and got.memory == "Ana keeps bees" and got.vector == pytest.approx([1, 0, 0, 0])
    assert ids(store.search([0, 1, 0, 0], project_id=project, limit=1)) == ["m2"]
    assert ids(store.search([0, 0, 1, 0], project_id=project, limit=5, query_text="bees", mode="hybrid"))[0] == "m1"
    store.upsert([record("m1", project, [0, 0, 1, 0], "Ana sold her bees")])
    assert store.count(project_id=project) == 2
    got = store.get("m1", project)
    assert got is not None and got.memory == "Ana sold her bees"


def test_a_batch_larger_than_one_write_is_stored_whole(new_store: StoreFactory, project: str) -> None:
    store = new_store(batch_size=7)  # Weaviate writes it in 5 batches; other stores ignore the setting
    store.upsert([record(f"m{i}", project, [1, i / 50, 0, 0], minutes=i) for i in range(30)])
    assert store.count(project_id=project) == 30
    assert len(store.list(project_id=project, limit=100)) == 30


def test_delete_by_id_ignores_unknown_ids(store: VectorStore, project: str) -> None:
    store.upsert([record("m1", project, [1, 0, 0, 0]), record("m2", project, [0, 1, 0, 0])])
    store.delete(["m1", "never-stored"], project_id=project)
    assert store.get("m1", project) is None and store.get("m2", project) is not None
    store.delete(["m2"])  # without the project: stores partitioned by project look everywhere
    assert store.count(project_id=project) == 0
    store.delete([])


def test_projects_are_isolated_and_reset_drops_one(store: VectorStore, project: str) -> None:
    other = project + "_b"
    store.upsert([record("m1", project, [1, 0, 0, 0]), record("m2", project, [0, 1, 0, 0])])
    store.upsert([record("m3", other, [1, 0, 0, 0])])
    assert store.get("m1", other) is None and store.get("m3", project) is None
    assert ids(store.search([1, 0, 0, 0], project_id=other, limit=10)) == ["m3"]
    assert (store.count(project_id=project), store.count(project_id=other)) == (2, 1)

    assert store.delete_project(project) == 2
    assert store.count(project_id=project) == 0 and store.search([1, 0, 0, 0], project_id=project, limit=5) == []
    assert store.count(project_id=other) == 1
    assert store.delete_project("proj_never_used") == 0

    store.upsert([record("m1", project, [1, 0, 0, 0])])  # a dropped project can be written again
    assert store.count(project_id=project) == 1


def test_another_process_sees_writes_and_resets(new_store: StoreFactory, project: str) -> None:
    writer, reader = new_store(), new_store()
    writer.upsert([record("m1", project, [1, 0, 0, 0])])
    assert reader.count(project_id=project) == 1
    writer.delete_project(project)
    assert reader.count(project_id=project) == 0 and reader.get("m1", project) is None
    writer.upsert([record("m2", project, [1, 0, 0, 0])])
    assert ids(reader.list(project_id=project, limit=5)) == ["m2"]


def test_scope_isolation_within_a_project(store: VectorStore, project: str) -> None:
    store.upsert(
        [
            record("ana", project, [1, 0, 0, 0], user_id="ana"),
            record("ana-bot", project, [1, 0, 0, 0], user_id="ana", agent_id="bot"),
            record("bob", project, [1, 0, 0, 0], user_id="bob"),
        ]
    )
    exact = parse({"AND": [{"user_id": "ana"}, {"agent_id": ""}, {"run_id": ""}]})  # reconciliation's scope
    assert ids(store.search([1, 0, 0, 0], project_id=project, where=exact, limit=10)) == ["ana"]
    assert set(ids(store.list(project_id=project, where=parse({"user_id": "ana"}), limit=10))) == {"ana", "ana-bot"}
    assert store.count(project_id=project, where=parse({"user_id": "bob"})) == 1


def test_list_is_newest_first_and_pages(store: VectorStore, project: str) -> None:
    store.upsert([record(f"m{i}", project, [1, 0, 0, i / 10], minutes=i) for i in range(1, 8)])
    assert ids(store.list(project_id=project, limit=3)) == ["m7", "m6", "m5"]
    assert ids(store.list(project_id=project, limit=3, offset=3)) == ["m4", "m3", "m2"]
    assert ids(store.list(project_id=project, limit=3, offset=6)) == ["m1"]
    assert store.list(project_id=project, limit=3, offset=10) == []


def test_expired_memories_leave_search_and_list_but_count(store: VectorStore, project: str) -> None:
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    today = datetime.now(UTC).date().isoformat()
    store.upsert(
        [
            record("old", project, [1, 0, 0, 0], expiration_date=yesterday),
            record("last-day", project, [1, 0, 0, 0], expiration_date=today, minutes=1),
            record("forever", project, [1, 0, 0, 0], minutes=2),
        ]
    )
    assert set(ids(store.search([1, 0, 0, 0], project_id=project, limit=10))) == {"last-day", "forever"}
    assert ids(store.list(project_id=project, limit=10)) == ["forever", "last-day"]
    assert len(store.search([1, 0, 0, 0], project_id=project, limit=10, include_expired=True)) == 3
    assert store.count(project_id=project) == 3
    assert store.count(project_id=project, include_expired=False) == 2


def test_ping_works_and_close_is_reusable(store: VectorStore, project: str) -> None:
    store.ping()
    store.upsert([record("m1", project, [1, 0, 0, 0], created_at=T0)])
    store.close()  # type: ignore[attr-defined]
    assert store.get("m1", project) is not None  # a closed store reconnects on next use


def test_another_vector_size_is_refused_at_start(new_store: StoreFactory, project: str) -> None:
    first = new_store()
    first.upsert([record("m1", project, [1, 0, 0, 0])])
    with pytest.raises(ValueError, match="4-d"):
        new_store(dimensions=8).ping()
