"""The worker killed with SIGKILL (its whole process group) at random points while jobs flow, then restarted:
every job ends SUCCEEDED or FAILED with a reason, none is lost, no scope holds two memories with the same
content hash, and the SQL history agrees with the vector store.

The conversations of 20 users draw on a small pool of facts, so reconcile ADDs, UPDATEs (a new city, a new
favourite colour) and finds duplicates (NONE) all the time. Messages held by a killed worker come back after
the broker's visibility timeout (short here) or are re-sent by the sweeper, whichever comes first.
CI: 200 jobs, 4 kills. ``--soak``: 1000 jobs, 15 kills.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.reliability.helpers import Sweeper, add_body, all_terminal, check_invariants, post_batches, sql_engine
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.fault]
SEED = 8
CITIES = ["Lisbon", "Porto", "Oslo", "Quito", "Lima", "Kyoto"]
FOODS = ["tea", "coffee", "olives", "mangoes", "sushi", "pasta", "figs", "dates"]
COLOURS = ["green", "blue", "red", "yellow"]
SPORTS = ["tennis", "chess", "golf", "rugby"]


def conversation(rng: random.Random) -> str:
    sentences = [
        f"I live in {rng.choice(CITIES)}.",
        f"I like {rng.choice(FOODS)}.",
        f"My favourite colour is {rng.choice(COLOURS)}.",
        f"I play {rng.choice(SPORTS)}.",
    ]
    return " ".join(rng.sample(sentences, rng.randint(1, 3)))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("worker-kill"),
        redis_url,
        ENGRAM_PIPELINE__VISIBILITY_TIMEOUT_SECONDS="10",
        ENGRAM_PIPELINE__LOCK_TTL_SECONDS="10",  # a killed holder's scope lock frees itself soon
        ENGRAM_PIPELINE__STUCK_AFTER_SECONDS="20",
    )
    try:
        s.start()
        Sweeper(s, every_seconds=2)
        yield s
    finally:
        s.stop()


def test_sigkill_at_random_points_loses_and_duplicates_nothing(stack: Stack, soak: bool) -> None:
    jobs, max_kills = (1000, 15) if soak else (200, 4)
    rng = random.Random(SEED)
    bodies = [add_body(f"kill-u{rng.randrange(20)}", conversation(rng)) for _ in range(jobs)]
    engine = sql_engine(stack)
    event_ids = post_batches(stack, bodies)
    done = all_terminal(engine, event_ids)
    worker = stack.procs[1]  # api, worker, then the sweeper
    kills = 0
    started = time.monotonic()
    while kills < max_kills and not done():
        time.sleep(rng.uniform(0.5, 4.0))  # somewhere in the middle of extract, embed, reconcile or notify
        stack.kill(worker)
        kills += 1
        worker = stack.start_worker(name=f"worker-restart-{kills}")
    deadline = time.monotonic() + (900 if soak else 240)
    while not done() and time.monotonic() < deadline:
        time.sleep(1)
    elapsed = time.monotonic() - started

    out = check_invariants(stack, engine, event_ids)
    sweeper_log = (stack.workdir / "sweeper.log").read_text(errors="replace")
    resent = sweeper_log.count("; re-sent ")
    print(f"\nRELIABILITY worker-kill: {kills} SIGKILLs, {elapsed:.0f}s, sweeper re-sent {resent}; {out.summary()}")
    assert kills == max_kills, "the jobs finished before every kill landed: raise the job count"
    assert not out.lost_jobs, out.lost_jobs[:5]
    assert out.duplicate_memories == 0
    assert not out.history_mismatches, out.history_mismatches[:5]
    assert not out.orphan_histories, out.orphan_histories[:5]
    assert out.statuses["SUCCEEDED"] + out.statuses["FAILED"] == jobs
    # a restarted worker asks for a sweep at once (worker_ready), before the periodic sweeper comes by
    assert "engram.sweep" in stack.log("worker-restart-1") + (stack.workdir / "worker-restart-1.log").read_text()
    engine.dispose()


def test_a_job_whose_message_never_left_the_api_is_swept(stack: Stack) -> None:
    """The API (or a client-facing process) died between writing the job and sending its message: the row
    is PENDING with nothing in the queue. Nothing but the sweeper knows about it."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from engram.sql import tables
    from engram.sql.jobs import JobStore

    engine = sql_engine(stack)
    project_id = stack.client.get("/v1/ping/").json()["project_id"]
    job_id = str(uuid.uuid4())
    store = JobStore(engine)
    store.create(job_id, project_id, add_body("orphan", "I breed snails."), {"user_id": "orphan"})
    with engine.begin() as conn:  # written a while ago; its message never sent
        conn.execute(sa.update(tables.jobs).where(tables.jobs.c.id == job_id)
                     .values(updated_at=datetime.now(UTC) - timedelta(hours=1)))
    job = stack.wait_job(job_id)
    assert job["status"] == "SUCCEEDED" and [r["event"] for r in job["results"]] == ["ADD"], job
    assert f"job {job_id}: PENDING at stage queued" in (stack.workdir / "sweeper.log").read_text()
    engine.dispose()
