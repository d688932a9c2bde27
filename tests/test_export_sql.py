"""The SQL side of export/import and of per-project prompts, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from engram.sql import tables
from engram.sql.exports import ExportStore
from engram.sql.feedback import FeedbackStore
from engram.sql.history import HistoryChange, HistoryStore
from engram.sql.tenancy import TenancyStore

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def forget(engine: sa.Engine, table: sa.Table, project_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c.project_id == project_id))


def test_history_of_live_and_deleted_memories_round_trips(sql_engine: sa.Engine) -> None:
    history, exports = HistoryStore(sql_engine), ExportStore(sql_engine)
    history.record("p1", [HistoryChange("h1", "m-live", None, "Likes tea", "ADD", actor_id="u", role="user",
                                        job_id="j1")], at=T0)
    history.record("p1", [HistoryChange("h2", "m-gone", None, "Owns a cat", "ADD")], at=T0 + timedelta(seconds=1))
    history.record("p1", [HistoryChange("h3", "m-gone", "Owns a cat", None, "DELETE", actor_id="api")],
                   at=T0 + timedelta(seconds=2))
    history.record("p2", [HistoryChange("h4", "m-other", None, "Not mine", "ADD")], at=T0)

    exported = exports.project_history("p1")
    assert [(e.id, e.memory_id, e.event, e.is_deleted) for e in exported] == [
        ("h2", "m-gone", "ADD", False), ("h3", "m-gone", "DELETE", True), ("h1", "m-live", "ADD", False)
    ]
    assert exported[2].created_at == T0 and (exported[2].actor_id, exported[2].role, exported[2].job_id) == (
        "u", "user", "j1"
    )

    as_json = [e.model_dump(mode="json") for e in exported]  # what the file holds
    forget(sql_engine, tables.memory_history, "p1")  # a fresh deployment, as far as p1 goes
    exports.restore_history("p1", as_json)
    exports.restore_history("p1", as_json)  # again: nothing twice
    assert exports.project_history("p1") == exported
    assert [e.event for e in history.for_memory("p1", "m-gone")] == ["ADD", "DELETE"]
    assert [e.id for e in exports.project_history("p2")] == ["h4"]


def test_feedback_round_trips_and_a_restore_is_idempotent(sql_engine: sa.Engine) -> None:
    store = FeedbackStore(sql_engine)
    first = store.add("p1", "m1", "POSITIVE", "right")
    second = store.add("p1", "m2", "NEGATIVE", None)
    store.add("p2", "m1", "VERY_NEGATIVE", "not my project")
    rows = store.for_project("p1")
    assert [(r["id"], r["memory_id"], r["feedback"], r["feedback_reason"]) for r in rows] == [
        (first, "m1", "POSITIVE", "right"), (second, "m2", "NEGATIVE", None)
    ]
    assert [r["id"] for r in store.for_project("p1", ["m2", "m-unknown"])] == [second]
    assert store.for_project("p1", []) == []
    as_json = json.loads(json.dumps(rows))  # what the file holds
    forget(sql_engine, tables.feedback, "p1")
    store.restore("p1", as_json)
    store.restore("p1", as_json)
    assert store.for_project("p1") == rows
    assert len(store.for_project("p2")) == 1


def test_project_prompts_are_stored_changed_and_cleared(sql_engine: sa.Engine) -> None:
    tenancy = TenancyStore(sql_engine)
    project = tenancy.create_project(tenancy.create_org("prompts"), "garden")
    tenancy.configure_project(project, custom_fact_extraction_prompt="Extract", custom_update_memory_prompt="Decide")
    stored = tenancy.project(project) or {}
    assert (stored["custom_fact_extraction_prompt"], stored["custom_update_memory_prompt"]) == ("Extract", "Decide")
    tenancy.configure_project(project, custom_update_memory_prompt="")  # clears that one only
    stored = tenancy.project(project) or {}
    assert (stored["custom_fact_extraction_prompt"], stored["custom_update_memory_prompt"]) == ("Extract", None)
    with pytest.raises(LookupError, match="proj_nope"):
        tenancy.configure_project("proj_nope", custom_instructions="x")
