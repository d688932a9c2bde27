"""The graph worker killed mid-write and restarted: the job still finishes, the graph holds each entity and
relation once. And a graph stage that keeps failing: recorded on the job, which still succeeds.

The graph store pauses inside its write transaction (``write_delay_seconds``, a test-only setting) so
a kill lands between writes; the broker gives an unacknowledged message back after the (short)
visibility timeout, to the restarted worker.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engram.graph.kuzu_store import KuzuConfig, KuzuGraphStore
from engram.sql.branches import BranchStore
from engram.sql.engine import make_engine
from tests.stack import Stack

pytestmark = pytest.mark.e2e
WRITE_DELAY_SECONDS = 1.0
VISIBILITY_TIMEOUT_SECONDS = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("graph-crash")
    s = Stack(
        workdir,
        redis_url,
        ENGRAM_GRAPH_STORE__PROVIDER="kuzu",
        ENGRAM_GRAPH_STORE__PATH=str(workdir / "graph"),
        ENGRAM_GRAPH_STORE__CONFIG=f'{{"write_delay_seconds": {WRITE_DELAY_SECONDS}}}',
        ENGRAM_PIPELINE__VISIBILITY_TIMEOUT_SECONDS=str(VISIBILITY_TIMEOUT_SECONDS),
    )
    try:
        s.start()
        s.start_graph_worker(0)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def branches(stack: Stack) -> Iterator[BranchStore]:
    engine = make_engine(stack.env["ENGRAM_SQL__URL"])
    yield BranchStore(engine)
    engine.dispose()


def wait_until(condition: Callable[[], bool], timeout_seconds: float = 60) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


def graph_started(branches: BranchStore, event_id: str) -> Callable[[], bool]:
    def started() -> bool:
        branch = branches.get(event_id)
        return branch is not None and branch.attempts >= 1

    return started


def restart(stack: Stack, name: str) -> None:
    stack.kill(stack.graph_workers[0])
    time.sleep(VISIBILITY_TIMEOUT_SECONDS + 0.5)  # then the broker hands the unacknowledged message back
    stack.start_graph_worker(0, name=name)


def graph(stack: Stack, what: str, user_id: str) -> list[tuple[str, ...]]:
    response = stack.client.get(f"/v1/graph/{what}/", params={"user_id": user_id})
    assert response.status_code == 200, response.text
    rows = response.json()["results"]
    if what == "entities":
        return sorted((e["name"],) for e in rows)
    return sorted((r["source"], r["relationship"], r["destination"]) for r in rows)


def test_killed_mid_write_then_restarted_the_job_finishes_once(stack: Stack, branches: BranchStore) -> None:
    event_id = stack.add({"messages": "I live in Paris. I like tea. I work at Acme Corp.", "user_id": "crash"})
    wait_until(graph_started(branches, event_id))
    time.sleep(WRITE_DELAY_SECONDS / 2)  # inside the write transaction: entities written, relations not yet
    stack.kill(stack.graph_workers[0])
    # Nothing of the interrupted transaction survived (the file is free now that its owner is dead).
    shard = KuzuGraphStore(KuzuConfig(path=Path(stack.env["ENGRAM_GRAPH_STORE__PATH"]), shard=0))
    assert shard.entities(stack.client.get("/v1/ping/").json()["project_id"], {}) == []
    assert shard.applied(event_id) is None
    shard.close()
    wait_until(lambda: len(stack.memories(user_id="crash")) == 3)  # the memories do not wait for the graph
    job = stack.client.get(f"/v1/event/{event_id}/").json()
    assert job["status"] == "RUNNING" and job["graph_status"] == "PENDING"
    time.sleep(VISIBILITY_TIMEOUT_SECONDS + 0.5)
    stack.start_graph_worker(0, name="graph0-after-kill")
    job = stack.wait_job(event_id)
    assert job["status"] == "SUCCEEDED" and job["graph_status"] == "DONE", job
    assert sorted((r["relationship"], r["destination"]) for r in job["relations"]["added"]) == [
        ("likes", "tea"), ("lives_in", "Paris"), ("works_at", "Acme Corp")
    ]
    branch = branches.get(event_id)
    assert branch is not None and branch.attempts == 2  # the killed attempt and the one that finished
    assert graph(stack, "relations", "crash") == [
        ("crash", "likes", "tea"), ("crash", "lives_in", "Paris"), ("crash", "works_at", "Acme Corp")
    ]
    assert graph(stack, "entities", "crash") == [("Acme Corp",), ("Paris",), ("crash",), ("tea",)]


def test_kills_at_random_points_leave_a_consistent_graph(stack: Stack, branches: BranchStore) -> None:
    rng = random.Random(4)
    expected: dict[str, list[tuple[str, ...]]] = {}
    events: list[str] = []
    for round_ in range(1):  # more rounds find more, slowly: each restart reloads the embedder
        for i in range(4):
            user = f"rnd-{round_}-{i}"
            events.append(stack.add({"messages": f"I live in Town{i}. I play chess.", "user_id": user}))
            expected[user] = [(user, "lives_in", f"Town{i}"), (user, "plays", "chess")]
        wait_until(graph_started(branches, events[-4]))
        time.sleep(rng.uniform(0.0, 2.5 * WRITE_DELAY_SECONDS))  # anywhere in the next jobs' graph stages
        restart(stack, name=f"graph0-round{round_}")
    for event_id in events:
        job = stack.wait_job(event_id)
        assert job["status"] == "SUCCEEDED" and job["graph_status"] == "DONE", job
    for user, relations in expected.items():
        assert sorted(relations) == graph(stack, "relations", user)
        assert graph(stack, "entities", user) == sorted([("Town" + user[-1],), ("chess",), (user,)])


def test_a_graph_stage_that_keeps_failing_is_recorded_and_the_job_succeeds(stack: Stack) -> None:
    stack.kill(stack.graph_workers[0])
    # A shard whose vectors are the wrong size: every write of this worker fails.
    broken = Path(stack.env["ENGRAM_GRAPH_STORE__PATH"]).parent / "graph-broken"
    stack.start_graph_worker(0, name="graph0-broken", ENGRAM_GRAPH_STORE__PATH=str(broken),
                             ENGRAM_GRAPH_STORE__CONFIG='{"dimensions": 8}')
    job = stack.wait_job(stack.add({"messages": "I live in Quito.", "user_id": "unlucky"}))
    assert job["status"] == "SUCCEEDED" and job["error"] is None
    assert job["graph_status"] == "FAILED" and "(after 5 attempts)" in job["graph_error"], job
    assert job["relations"] is None
    assert [m["memory"] for m in stack.memories(user_id="unlucky")] == ["Lives in Quito"]
