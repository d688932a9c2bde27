"""No graph worker running: the graph branch's deadline ends jobs anyway, and reads degrade over HTTP.

A real API, a pipeline worker (which also delivers webhooks), the real ``engram sweep`` process and a
webhook receiver; graph memory on, its one shard's worker not started until the last test. Jobs must
SUCCEED with ``graph_status`` FAILED once the (small) deadline has passed, with their memories stored
and searchable; search answers with its vector results and ``relations_error``; graph listings answer
503. Then the graph worker starts, takes the graph message that waited for it, and applies it late:
the graph catches up, the job's end stays as it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.stack import BIN, Stack
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e
DEADLINE_SECONDS = 2
QUERY_TIMEOUT_SECONDS = 0.5
USER = "deadline-ana"
REASON = f"graph worker did not finish within {DEADLINE_SECONDS} s"
ADDED = [
    {"source": USER, "relationship": "lives_in", "destination": "Oslo"},
    {"source": USER, "relationship": "works_at", "destination": "museum"},
]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().up()
    yield r
    r.down()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("graph-deadline")
    s = Stack(
        workdir,
        redis_url,
        ENGRAM_GRAPH_STORE__PROVIDER="kuzu",
        ENGRAM_GRAPH_STORE__PATH=str(workdir / "graph"),
        ENGRAM_GRAPH_STORE__BRANCH_DEADLINE_SECONDS=str(DEADLINE_SECONDS),
        ENGRAM_GRAPH_STORE__QUERY_TIMEOUT_SECONDS=str(QUERY_TIMEOUT_SECONDS),
        ENGRAM_PIPELINE__SYNC_WAIT_SECONDS="60",
        ENGRAM_WEBHOOKS__ALLOWED_NETWORKS='["127.0.0.1/32"]',  # loopback only, and only because tests say so
    )
    try:
        s.start()  # the API and a pipeline worker; no graph worker
        s._spawn("sweeper", [str(BIN / "engram"), "sweep", "--every", "0.5"])  # as the Procfile runs it
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def job(stack: Stack, receiver: Receiver) -> dict[str, Any]:
    """One add with async_mode=false while no graph worker runs, and a webhook for its end."""
    project = stack.client.get("/v1/ping/").json()["project_id"]
    hook = stack.client.post(f"/api/v1/webhooks/projects/{project}/",
                             json={"url": receiver.url("/done"), "name": "done", "event_types": ["job_succeeded"]})
    assert hook.status_code == 201, hook.text
    response = stack.client.post("/v1/memories/", json={
        "messages": "I live in Oslo. I work at a museum.", "user_id": USER, "async_mode": False})
    assert response.status_code == 200, f"{response.text}\n{stack.log('sweeper')}"  # 202: still waiting
    return {"response": response.json(), "webhook_id": hook.json()["webhook_id"]}


def wait_until(condition: Callable[[], Any], what: str, timeout_seconds: float = 90) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not in {timeout_seconds}s")


def job_succeeded_bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [body for r in receiver.received("/done") if (body := json.loads(r.body))["type"] == "job_succeeded"]


def test_the_deadline_ends_the_job_with_its_memories_and_a_failed_graph(
    stack: Stack, receiver: Receiver, job: dict[str, Any]
) -> None:
    added = job["response"]
    assert added["status"] == "SUCCEEDED" and sorted(r["memory"] for r in added["results"]) == [
        "Lives in Oslo", "Works at a museum"]
    assert added["graph_status"] == "FAILED" and added["graph_error"] == REASON
    assert added["relations"] == {"added_entities": [], "deleted_entities": []}
    event = stack.client.get(f"/v1/event/{added['event_id']}/").json()
    assert (event["status"], event["graph_status"], event["graph_error"]) == ("SUCCEEDED", "FAILED", REASON)
    assert event["results"] == added["results"]
    assert f"job {added['event_id']}: graph branch FAILED: {REASON}" in stack.log("sweeper")

    [webhook] = wait_until(lambda: job_succeeded_bodies(receiver), "the job_succeeded webhook")
    data = webhook["event_details"]["data"]
    assert webhook["job_id"] == added["event_id"] and data["results"] == added["results"]
    assert (data["graph_status"], data["graph_error"], data["relations"]) == ("FAILED", REASON, added["relations"])


def test_search_and_graph_listings_degrade_while_no_graph_worker_runs(stack: Stack, job: dict[str, Any]) -> None:
    body = {"query": "where does she live", "filters": {"user_id": USER}, "enable_graph": True}
    found = stack.client.post("/v3/memories/search/", json=body)
    assert found.status_code == 200, found.text
    answer = found.json()
    assert answer["results"][0]["memory"] == "Lives in Oslo"  # the vector results, as without the graph
    assert answer["relations"] == []
    assert answer["relations_error"] == f"unavailable: no answer from graph.0 within {QUERY_TIMEOUT_SECONDS:g}s"
    for what in ("entities", "relations"):
        listing = stack.client.get(f"/v1/graph/{what}/", params={"user_id": USER})
        assert listing.status_code == 503, listing.text
        assert listing.headers["retry-after"] == "5" and "no answer from graph.0" in listing.json()["detail"]


def test_a_graph_worker_started_later_applies_the_write_and_leaves_the_job_as_it_ended(
    stack: Stack, receiver: Receiver, job: dict[str, Any]
) -> None:
    event_id = job["response"]["event_id"]
    before = stack.client.get(f"/v1/event/{event_id}/").json()
    stack.start_graph_worker(0)  # takes the graph message that waited in graph.0

    def caught_up() -> dict[str, Any] | None:
        event = stack.client.get(f"/v1/event/{event_id}/").json()
        return event if event["graph_status"] == "DONE" else None

    after = wait_until(caught_up, "the late graph write")
    assert after["relations"] == {"added": ADDED, "deleted": []}
    assert after["graph_error"] == f"{REASON}; its graph write was applied later"
    for key in ("status", "stage", "results", "finished_at"):  # the job's end is as it was
        assert after[key] == before[key], key
    relations = stack.client.get("/v1/graph/relations/", params={"user_id": USER})
    assert relations.status_code == 200, relations.text
    assert sorted((r["relationship"], r["destination"]) for r in relations.json()["results"]) == [
        ("lives_in", "Oslo"), ("works_at", "museum")]
    body = {"query": "where does she live", "filters": {"user_id": USER}, "enable_graph": True}
    found = stack.client.post("/v3/memories/search/", json=body).json()
    assert found["relations_error"] is None and ADDED[0] in found["relations"]
    # No second job_succeeded: the job ended once.
    deliveries = stack.client.get(f"/api/v1/webhooks/{job['webhook_id']}/deliveries/").json()["results"]
    assert [d["event_type"] for d in deliveries] == ["job_succeeded"]
    assert len(job_succeeded_bodies(receiver)) == 1
