"""Redis (the broker and the scope locks) killed during ingest and restarted empty, as after a crash without
persistence: while it is down the API answers 503 with Retry-After (never 500) on every route that needs it;
the jobs that were in flight lost their messages, and the sweeper re-sends them from the SQL truth, so they
all finish once Redis is back, with no duplicate memories.

A private redis-server on its own port: the shared one on 6379 is never touched.
CI: 60 jobs, one outage. ``--soak``: 300 jobs, three outages.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.helpers import (
    RedisServer,
    Supervisor,
    Sweeper,
    add_body,
    all_terminal,
    check_invariants,
    every_route,
    job_rows,
    post_batches,
    sql_engine,
    wait_until,
)
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.fault]
DOWN_SECONDS = 6
FACTS = ["I like tea.", "I play chess.", "I live in Oslo.", "I live in Lima.", "I own a kayak.", "I speak Finnish."]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("private-redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, broker: RedisServer) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("redis-restart"), broker.url,
              ENGRAM_PIPELINE__STUCK_AFTER_SECONDS="5", ENGRAM_PIPELINE__VISIBILITY_TIMEOUT_SECONDS="30")
    try:
        s.start()
        Sweeper(s, every_seconds=1)
        yield s
    finally:
        s.stop()


def decoy(stack: Stack) -> dict[str, Any]:
    """Ids of a decoy user's memory and job, for the routes that take ids."""
    job = stack.wait_job(stack.add(add_body("decoy", "I collect stamps.")))
    assert job["status"] == "SUCCEEDED", job
    return {"memory_id": job["results"][0]["id"], "event_id": job["id"], "user_id": "decoy",
            "project_id": stack.client.get("/v1/ping/").json()["project_id"]}


def outage(stack: Stack, broker: RedisServer, ids: dict[str, Any], in_flight: list[str]) -> Counter[str]:
    """Kill Redis, check every route while it is down, bring it back empty. The statuses seen while down."""
    broker.kill()
    seen: Counter[str] = Counter()
    try:
        refused = stack.client.post("/v1/memories/", json=add_body("late", "I like figs."))
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0, refused.text
        batch = stack.client.post("/v1/batches/", json=[add_body("late", "I like figs.")])
        assert batch.status_code == 503 and batch.headers["retry-after"], batch.text
        job = stack.client.get(f"/v1/event/{in_flight[0]}/")  # SQL is the truth: still answered
        assert job.status_code == 200 and job.json()["id"] == in_flight[0]
        for method, path, status, head, retry_after in every_route(stack.client, ids):
            assert status < 500 or status in (501, 503), (method, path, status, head)
            if status == 503 and path != "/health":  # /health reports "degraded" with 503, by design
                assert retry_after and int(retry_after) > 0, (method, path, head)
            seen[str(status)] += 1
        time.sleep(max(0.0, DOWN_SECONDS - 2))
    finally:
        broker.start()  # empty: every queued message, unacked delivery and scope lock is gone
    return seen


def test_redis_restart_loses_no_job(stack: Stack, broker: RedisServer, soak: bool, tmp_path: Path) -> None:
    jobs, outages = (300, 3) if soak else (60, 1)
    rng = random.Random(11)
    engine = sql_engine(stack)
    # A worker's second broker outage can kill it (kombu 5.7: "Unrecoverable error", RELIABILITY.md): in
    # production its process manager restarts it; here this does.
    supervisor = Supervisor(stack, stack.procs[1])
    ids = decoy(stack)
    bodies = [add_body(f"rr-u{rng.randrange(10)}", " ".join(rng.sample(FACTS, 2))) for _ in range(jobs)]
    event_ids: list[str] = []
    statuses: Counter[str] = Counter()
    per_outage = jobs // outages
    for round_ in range(outages):
        batch_ids = post_batches(stack, bodies[round_ * per_outage : (round_ + 1) * per_outage], size=20)
        event_ids += batch_ids
        # in the middle of it: some finished, most queued or running
        def started(ids: list[str] = batch_ids) -> bool:
            supervisor.check()
            return sum(r.status in ("SUCCEEDED", "FAILED") for r in job_rows(engine, ids).values()) >= 3

        wait_until(started, "the first jobs finished", 120, 0.05)
        in_flight = [r.id for r in job_rows(engine, batch_ids).values() if r.status in ("PENDING", "RUNNING")]
        assert in_flight, "every job finished before the outage: raise the job count"
        statuses += outage(stack, broker, ids, in_flight)
    done = all_terminal(engine, event_ids)

    def finished() -> bool:
        supervisor.check()
        return done()

    wait_until(finished, "every job ended after Redis came back", 240 if not soak else 600)

    after = stack.wait_job(stack.add(add_body("after", "I like figs.")))  # and ingest works again
    out = check_invariants(stack, engine, event_ids)
    resent = (stack.workdir / "sweeper.log").read_text(errors="replace").count("; re-sent ")
    print(f"\nRELIABILITY redis-restart: {outages} outages of ~{DOWN_SECONDS}s, statuses while down {dict(statuses)}, "
          f"sweeper re-sent {resent}, worker restarts after it exited {len(supervisor.restarts)}; {out.summary()}")
    assert after["status"] == "SUCCEEDED", after
    assert out.statuses == Counter({"SUCCEEDED": len(event_ids)}), out.summary()
    assert out.duplicate_memories == 0 and not out.history_mismatches and not out.orphan_histories, out.summary()
    assert resent >= 1  # the lost messages came back through the sweeper, not by themselves
    engine.dispose()
