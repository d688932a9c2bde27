"""The fork and join of a job's branches in SQL (SQLite and PostgreSQL): notify is claimed exactly once,
only after both branches ended; relation events are recorded once. A branch past its deadline is
failed once (however many sweepers run) and may still record a late graph write, never reopening.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from engram.sql.branches import BranchStore
from engram.sql.engine import make_engine
from engram.sql.jobs import JobStore
from engram.sql.migrate import upgrade
from schemas.jobs import JobStatus, Stage
from tests.conftest import PG_ADMIN_URL, missing

EVENTS = {
    "added": [{"source": "ana", "relationship": "lives_in", "destination": "Berlin"}],
    "deleted": [{"source": "ana", "relationship": "lives_in", "destination": "Paris"}],
}


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    name = f"engram_graph_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        missing(f"PostgreSQL at {PG_ADMIN_URL}: {exc}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'engram.db'}"
    else:
        url = request.getfixturevalue("pg_database")
        with sa.create_engine(url).begin() as conn:  # a clean schema per test
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    e = make_engine(url)
    upgrade(e)
    yield e
    e.dispose()


def job_after_embed(engine: sa.Engine, job_id: str, *, graph: bool) -> tuple[JobStore, BranchStore]:
    jobs, branches = JobStore(engine), BranchStore(engine)
    jobs.create(job_id, "p1", {"messages": "x", "user_id": "ana"}, {"user_id": "ana"})
    jobs.complete_stage(job_id, Stage.EXTRACTED, facts=["Lives in Berlin"])
    jobs.complete_stage(job_id, Stage.EMBEDDED, embeddings=[[1.0, 0.0]])
    if graph:
        branches.open_graph_branch(job_id)
    return jobs, branches


def test_notify_waits_for_the_graph_branch(engine: sa.Engine) -> None:
    jobs, branches = job_after_embed(engine, "j1", graph=True)
    branch = branches.get("j1")
    assert branch is not None and branch.state == "PENDING" and branch.open and not branch.both_done
    jobs.complete_stage("j1", Stage.RECONCILED)
    assert not branches.claim_notify("j1")  # reconcile finished first: the graph branch will send notify
    assert branches.start_attempt("j1") == 1
    assert branches.finish("j1", "p1", "DONE", events=EVENTS)
    assert not branches.finish("j1", "p1", "DONE", events=EVENTS)  # a redelivery records nothing twice
    assert branches.claim_notify("j1")
    assert not branches.claim_notify("j1")
    assert branches.relation_events("j1").model_dump() == EVENTS
    branch = branches.get("j1")
    assert branch is not None and branch.both_done and branch.attempts == 1


def test_graph_first_then_reconcile_claims(engine: sa.Engine) -> None:
    jobs, branches = job_after_embed(engine, "j2", graph=True)
    assert branches.finish("j2", "p1", "FAILED", error="graph: gave up after 5 attempts")
    assert not branches.claim_notify("j2")  # reconcile is not done yet
    jobs.complete_stage("j2", Stage.RECONCILED)
    assert branches.claim_notify("j2")
    branch = branches.get("j2")
    assert branch is not None and branch.error == "graph: gave up after 5 attempts" and branch.state == "FAILED"
    assert branches.relation_events("j2").model_dump() == {"added": [], "deleted": []}


def test_jobs_without_graph_memory_go_straight_to_notify(engine: sa.Engine) -> None:
    jobs, branches = job_after_embed(engine, "j3", graph=False)
    jobs.complete_stage("j3", Stage.RECONCILED)
    assert branches.claim_notify("j3")
    branch = branches.get("j3")
    assert branch is not None and branch.state is None and branch.both_done


def test_opening_twice_never_reopens_an_ended_branch(engine: sa.Engine) -> None:
    _, branches = job_after_embed(engine, "j4", graph=True)
    branches.finish("j4", "p1", "DONE", events=EVENTS)
    branches.open_graph_branch("j4")  # a redelivered embed
    branch = branches.get("j4")
    assert branch is not None and branch.state == "DONE"


def test_racing_claims_have_one_winner(engine: sa.Engine) -> None:
    jobs, branches = job_after_embed(engine, "j5", graph=True)
    jobs.complete_stage("j5", Stage.RECONCILED)
    branches.finish("j5", "p1", "DONE", events=EVENTS)
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda _: branches.claim_notify("j5"), range(16)))
    assert wins.count(True) == 1
    jobs.finish("j5", JobStatus.SUCCEEDED)


def test_a_branch_past_its_deadline_is_failed_once_and_the_job_can_notify(engine: sa.Engine) -> None:
    from datetime import UTC, datetime, timedelta

    from engram import sweeper
    from engram.sql.branches import deadline_reason

    jobs, branches = job_after_embed(engine, "d1", graph=True)
    job_after_embed(engine, "d2", graph=True)
    jobs.complete_stage("d1", Stage.RECONCILED)
    handed_on: list[str] = []
    now = datetime.now(UTC)
    # Not yet past the deadline: nothing happens.
    assert sweeper.expire_graph_branches(engine, 60, handed_on.append, limit=10, now=now) == 0
    later = now + timedelta(seconds=61)
    with ThreadPoolExecutor(4) as pool:  # several sweepers at once: each branch is failed by one of them
        counts = list(pool.map(
            lambda _: sweeper.expire_graph_branches(engine, 60, handed_on.append, limit=10, now=later), range(4)))
    assert sum(counts) == 2 and sorted(handed_on) == ["d1", "d2"]
    branch = branches.get("d1")
    assert branch is not None and branch.state == "FAILED" and branch.expired and not branch.open
    assert branch.error == deadline_reason(60) == "graph worker did not finish within 60 s"
    assert branches.claim_notify("d1")  # reconcile is done: notify runs now
    assert not branches.claim_notify("d2")  # its reconcile is not done: reconcile's join will send it
    outcome = branches.outcome("d1")
    assert outcome is not None and outcome.add_fields() == {
        "relations": {"added_entities": [], "deleted_entities": []}, "graph_status": "FAILED",
        "graph_error": "graph worker did not finish within 60 s"}


def test_a_late_graph_write_is_recorded_without_reopening_the_branch(engine: sa.Engine) -> None:
    from datetime import UTC, datetime, timedelta

    from engram.sql.branches import deadline_reason

    jobs, branches = job_after_embed(engine, "d3", graph=True)
    jobs.complete_stage("d3", Stage.RECONCILED)
    assert branches.expire("d3", datetime.now(UTC) + timedelta(seconds=1), deadline_reason(2))
    assert branches.claim_notify("d3")
    jobs.finish("d3", JobStatus.SUCCEEDED)
    assert not branches.finish("d3", "p1", "FAILED", error="graph: gave up")  # a late failure changes nothing
    assert branches.finish("d3", "p1", "DONE", events=EVENTS)  # a late success is recorded
    assert not branches.finish("d3", "p1", "DONE", events=EVENTS)
    branch = branches.get("d3")
    assert branch is not None and branch.state == "DONE" and not branch.expired
    assert branch.status is JobStatus.SUCCEEDED  # the job's end is as it was
    assert branch.error == "graph worker did not finish within 2 s; its graph write was applied later"
    outcome = branches.outcome("d3")
    assert outcome is not None and outcome.relations.model_dump() == EVENTS
    assert outcome.add_fields()["relations"] == {"added_entities": EVENTS["added"],
                                                 "deleted_entities": EVENTS["deleted"]}


def test_a_branch_the_graph_stage_gave_up_on_is_not_reopened_by_a_late_success(engine: sa.Engine) -> None:
    from datetime import UTC, datetime, timedelta

    _, branches = job_after_embed(engine, "d4", graph=True)
    assert branches.finish("d4", "p1", "FAILED", error="graph: gave up after 5 attempts")
    assert not branches.expire("d4", datetime.now(UTC) + timedelta(seconds=1), "graph worker did not finish")
    assert not branches.finish("d4", "p1", "DONE", events=EVENTS)
    branch = branches.get("d4")
    assert branch is not None and branch.state == "FAILED" and not branch.expired
    assert branches.outcome("d4") is not None and branches.relation_events("d4").added == []
    _, plain = job_after_embed(engine, "d5", graph=False)
    assert plain.outcome("d5") is None  # no graph memory for the job: nothing to report
