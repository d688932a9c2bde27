"""Jobs, events and history against SQLite and PostgreSQL (every test runs on both)."""

from __future__ import annotations

import sqlalchemy as sa

from engram.sql.history import HistoryChange, HistoryStore
from engram.sql.jobs import JobStore
from engram.sql.migrate import upgrade
from schemas.jobs import JobStatus, MemoryEvent, Stage


def test_job_lifecycle(sql_engine: sa.Engine) -> None:
    jobs = JobStore(sql_engine)
    jobs.create("j1", "p1", {"messages": [{"role": "user", "content": "hi"}]}, {"user_id": "ana"})
    job = jobs.get("j1")
    assert job is not None and job.status is JobStatus.PENDING and job.stage is Stage.QUEUED
    assert jobs.get("j1", project_id="other") is None
    assert jobs.start_attempt("j1") == 1
    assert jobs.start_attempt("j1") == 2
    jobs.complete_stage("j1", Stage.EXTRACTED, facts=["Likes tea", "Lives in Oslo"])
    jobs.complete_stage("j1", Stage.EMBEDDED, embeddings=[[0.5, 0.25], [1.0, -1.0]])
    job = jobs.get("j1")
    assert job is not None
    assert job.status is JobStatus.RUNNING and job.attempts == 0 and job.started_at is not None
    assert job.facts == ["Likes tea", "Lives in Oslo"]
    assert job.embeddings == [[0.5, 0.25], [1.0, -1.0]]
    assert job.done(Stage.EXTRACTED) and not job.done(Stage.RECONCILED)
    jobs.finish("j1", JobStatus.FAILED, "llm: malformed")
    job = jobs.get("j1")
    assert job is not None and job.status is JobStatus.FAILED and job.error == "llm: malformed"
    assert job.finished_at is not None and job.created_at.tzinfo is not None


def test_the_first_saved_plan_stays(sql_engine: sa.Engine) -> None:
    # Only the delivery whose plan is saved may append its ADDs (workers/reconcile.py); any later one re-applies it.
    jobs = JobStore(sql_engine)
    jobs.create("j1", "p1", {"messages": [{"role": "user", "content": "hi"}]}, {"user_id": "ana"})
    first = [{"event": "ADD", "memory_id": "m1", "text": "Likes tea"}]
    assert jobs.save_plan("j1", first) is True
    assert jobs.save_plan("j1", [{"event": "ADD", "memory_id": "m9", "text": "other"}]) is False
    job = jobs.get("j1")
    assert job is not None and job.plan == first
    assert jobs.save_plan("missing", first) is False


def test_events_and_history_are_recorded_once(sql_engine: sa.Engine) -> None:
    jobs, history = JobStore(sql_engine), HistoryStore(sql_engine)
    jobs.create("j1", "p1", {}, {})
    events = [MemoryEvent(id="m1", memory="Likes tea", event="ADD")]
    changes = [HistoryChange("h1", "m1", None, "Likes tea", "ADD", job_id="j1")]
    for _ in range(2):  # a redelivered stage records the same rows again
        with sql_engine.begin() as conn:
            jobs.record_events("j1", "p1", events, conn)
            history.record("p1", changes, conn=conn)
    assert jobs.events("j1") == events
    rows = history.for_memory("p1", "m1")
    assert [(r.event, r.new_memory) for r in rows] == [("ADD", "Likes tea")]
    assert history.for_memory("other-project", "m1") == []


def test_migrations_are_idempotent_and_reach_the_single_head(sql_engine: sa.Engine) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from engram.sql.migrate import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"migrations must form one line, found heads {heads}"
    upgrade(sql_engine)  # already at head: nothing to do, nothing breaks
    with sql_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == heads[0]
    assert {"jobs", "memory_events", "memory_history", "api_keys", "projects"} <= set(
        sa.inspect(sql_engine).get_table_names()
    )


def test_a_stage_attempt_is_counted_only_while_the_stage_is_to_do(sql_engine: sa.Engine) -> None:
    # What a stage runs before its work (workers/stage.py): under reconcile's scope lock it is also the check
    # that no duplicate delivery did the stage meanwhile, and it brings the plan an earlier attempt saved.
    jobs = JobStore(sql_engine)
    jobs.create("j1", "p1", {"messages": [{"role": "user", "content": "hi"}]}, {"user_id": "ana"})
    first = jobs.start_stage_attempt("j1", Stage.EXTRACTED)
    assert first is not None and first.number == 1 and first.plan is None
    second = jobs.start_stage_attempt("j1", Stage.EXTRACTED)
    assert second is not None and second.number == 2
    assert jobs.start_stage_attempt("j1", Stage.EMBEDDED) is None  # not its turn: nothing counted
    assert jobs.complete_stage("j1", Stage.EXTRACTED, facts=["Likes tea"])
    assert jobs.start_stage_attempt("j1", Stage.EXTRACTED) is None  # a duplicate: already done
    job = jobs.get("j1")
    assert job is not None and job.attempts == 0 and job.status is JobStatus.RUNNING
    jobs.complete_stage("j1", Stage.EMBEDDED, embeddings=[[1.0, 0.0]])
    plan = [{"event": "ADD", "memory_id": "m1", "text": "Likes tea"}]
    assert jobs.save_plan("j1", plan)
    resumed = jobs.start_stage_attempt("j1", Stage.RECONCILED)
    assert resumed is not None and resumed.number == 1 and resumed.plan == plan
    jobs.finish("j1", JobStatus.FAILED, "swept")
    assert jobs.start_stage_attempt("j1", Stage.RECONCILED) is None  # the job ended
    assert jobs.start_stage_attempt("missing", Stage.EXTRACTED) is None


def test_the_last_stage_ends_the_job_in_one_statement(sql_engine: sa.Engine) -> None:
    jobs = JobStore(sql_engine)
    jobs.create("j1", "p1", {}, {})
    jobs.finish("j1", JobStatus.SUCCEEDED, stage=Stage.NOTIFIED)
    job = jobs.get("j1")
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.stage is Stage.NOTIFIED
    assert job.finished_at is not None and job.error is None and job.graph_state is None
