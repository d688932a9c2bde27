"""Graph memory end to end: a real API, a real worker and two graph workers (one per shard), real Redis,
SQLite, LanceDB, Kuzu files and the real embedder. Relations in job results, in the synchronous add
response, the event stream and the job_succeeded webhook (a real receiver); graph listings, search
relations through the graph worker, shard ownership, and search degrading while a graph worker is down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from config.container import Container
from config.settings import Settings
from engram.embedding.local import SentenceTransformerEmbedder
from engram.graph import rpc
from engram.graph.kuzu_store import GraphStoreLocked, KuzuConfig, KuzuGraphStore
from engram.graph.query import relations_for_search
from engram.graph.routing import shard_for
from engram.scope import Scope
from tests.stack import Stack
from tests.webhook_receiver import Receiver
from workers.celery_app import producer

pytestmark = pytest.mark.e2e
SHARDS = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("graph-e2e")
    s = Stack(workdir, redis_url, ENGRAM_GRAPH_STORE__PROVIDER="kuzu", ENGRAM_GRAPH_STORE__PATH=str(workdir / "graph"),
              ENGRAM_GRAPH_STORE__SHARDS=str(SHARDS),
              ENGRAM_WEBHOOKS__ALLOWED_NETWORKS='["127.0.0.1/32"]')  # the test receiver, on loopback
    try:
        s.start()
        for shard in range(SHARDS):
            s.start_graph_worker(shard)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def project_id(stack: Stack) -> str:
    return str(stack.client.get("/v1/ping/").json()["project_id"])


@pytest.fixture(scope="module")
def api_side(stack: Stack, embedder: SentenceTransformerEmbedder) -> Iterator[tuple[Container, Celery]]:
    """What an API process holds: a container (never opening a graph file) and a Celery producer."""
    settings = Settings(
        environment="test",
        sql={"url": stack.env["ENGRAM_SQL__URL"]},
        redis={"url": stack.env["ENGRAM_REDIS__URL"], "key_prefix": stack.env["ENGRAM_REDIS__KEY_PREFIX"]},
        graph_store={"provider": "kuzu", "shards": SHARDS},
    )
    c = Container(settings)
    c.__dict__["embedder"] = embedder
    sender = producer(settings)
    yield c, sender
    sender.close()
    c.close()


def user_on(shard: int, project_id: str, prefix: str) -> str:
    return next(u for i in range(100) if shard_for(Scope(project_id, u := f"{prefix}-{i}"), SHARDS) == shard)


def relations(stack: Stack, **ids: str) -> list[tuple[str, str, str]]:
    response = stack.client.get("/v1/graph/relations/", params=ids)
    assert response.status_code == 200, response.text
    return sorted((r["source"], r["relationship"], r["destination"]) for r in response.json()["results"])


def test_jobs_report_relations_and_the_api_lists_them(
    stack: Stack, project_id: str, api_side: tuple[Container, Celery]
) -> None:
    first = stack.wait_job(stack.add({"messages": "My name is Ana. I live in Paris. I work at a bakery.",
                                      "user_id": "ana-g"}))
    assert first["status"] == "SUCCEEDED" and first["graph_status"] == "DONE" and first["graph_error"] is None
    assert len(first["results"]) == 3  # the memories are there as before
    assert sorted((r["relationship"], r["destination"]) for r in first["relations"]["added"]) == [
        ("lives_in", "Paris"), ("name_is", "Ana"), ("works_at", "bakery")
    ]
    second = stack.wait_job(stack.add({"messages": "I moved to Berlin.", "user_id": "ana-g"}))
    assert second["relations"] == {
        "added": [{"source": "ana-g", "relationship": "lives_in", "destination": "Berlin"}],
        "deleted": [{"source": "ana-g", "relationship": "lives_in", "destination": "Paris"}],
    }
    assert relations(stack, user_id="ana-g") == [
        ("ana-g", "lives_in", "Berlin"), ("ana-g", "name_is", "Ana"), ("ana-g", "works_at", "bakery")
    ]
    entities = stack.client.get("/v1/graph/entities/", params={"user_id": "ana-g"}).json()
    assert sorted(e["name"] for e in entities["results"]) == ["Ana", "Berlin", "Paris", "ana-g", "bakery"]
    assert stack.client.get("/v1/graph/relations/").status_code == 400  # whose graph?
    c, sender = api_side
    found, problem = relations_for_search(c, sender, project_id, {"user_id": "ana-g"}, "Where do I live?",
                                          timeout_seconds=10)
    assert problem is None
    assert {"source": "ana-g", "relationship": "lives_in", "destination": "Berlin"} in found
    assert all(set(r) == {"source", "relationship", "destination"} for r in found)
    assert relations_for_search(c, sender, project_id, {"user_id": "nobody"}, "Where do I live?",
                                timeout_seconds=10) == ([], None)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().up()
    yield r
    r.down()


def read_stream(stack: Stack, event_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events of a job's stream, until its ``end``."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    with stack.client.stream("GET", f"/v1/event/{event_id}/stream") as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_the_add_response_the_stream_and_the_webhook_carry_the_relations(
    stack: Stack, project_id: str, receiver: Receiver
) -> None:
    hook = stack.client.post(f"/api/v1/webhooks/projects/{project_id}/", json={
        "url": receiver.url("/graph"), "name": "graph", "event_types": ["job_succeeded"]})
    assert hook.status_code == 201, hook.text
    user = user_on(0, project_id, "out")
    sync = {"messages": "I live in Porto. I work at a school.", "user_id": user, "async_mode": False}
    response = stack.client.post("/v1/memories/", json=sync)
    assert response.status_code == 200, response.text
    added = response.json()
    assert added["status"] == "SUCCEEDED" and len(added["results"]) == 2
    assert (added["graph_status"], added["graph_error"]) == ("DONE", None)
    assert added["relations"] == {"added_entities": [
        {"source": user, "relationship": "lives_in", "destination": "Porto"},
        {"source": user, "relationship": "works_at", "destination": "school"},
    ], "deleted_entities": []}
    event = stack.client.get(f"/v1/event/{added['event_id']}/").json()
    assert event["relations"] == {"added": added["relations"]["added_entities"], "deleted": []}

    event_id = stack.add({"messages": "I moved to Lisbon.", "user_id": user})
    stream = read_stream(stack, event_id)  # followed live, from the job's start
    job = stack.wait_job(event_id)
    moved = {"added": [{"source": user, "relationship": "lives_in", "destination": "Lisbon"}],
             "deleted": [{"source": user, "relationship": "lives_in", "destination": "Porto"}]}
    assert job["relations"] == moved
    names = [name for name, _ in stream]
    assert names.count("relations") == 1 and names.count("end") == 1 and names[-1] == "end"
    assert dict(stream)["relations"] == moved
    end = stream[-1][1]
    assert (end["status"], end["graph_status"], end["graph_error"]) == ("SUCCEEDED", "DONE", None)
    assert [data for name, data in stream if name == "memory"] == job["results"]

    def bodies() -> dict[str, dict[str, Any]] | None:
        found = {b["job_id"]: b["event_details"]["data"] for r in receiver.received("/graph")
                 if (b := json.loads(r.body))["type"] == "job_succeeded"}
        return found if {added["event_id"], event_id} <= set(found) else None

    wait_until(lambda: bodies() is not None)
    webhooks = bodies()
    assert webhooks is not None
    first, second = webhooks[added["event_id"]], webhooks[event_id]
    assert first["relations"] == added["relations"] and first["results"] == added["results"]
    assert (first["graph_status"], first["graph_error"]) == ("DONE", None)
    assert second["relations"] == {"added_entities": moved["added"], "deleted_entities": moved["deleted"]}
    stack.client.delete(f"/api/v1/webhooks/{hook.json()['webhook_id']}/")


def test_each_shard_file_is_owned_by_its_own_worker_only(
    stack: Stack, project_id: str, api_side: tuple[Container, Celery], tmp_path: Path
) -> None:
    users = [f"route-{i}" for i in range(8)]
    jobs = [stack.add({"messages": f"I live in City{i}.", "user_id": u}) for i, u in enumerate(users)]
    for event_id in jobs:
        job = stack.wait_job(event_id)
        assert job["graph_status"] == "DONE", job  # a misrouted message would fail it with WrongShard
    for i, user in enumerate(users):  # listings ask only the user's shard: found means stored there
        assert relations(stack, user_id=user) == [(user, "lives_in", f"City{i}")]
    graph_dir = Path(stack.env["ENGRAM_GRAPH_STORE__PATH"])
    owners = {}
    for shard, worker in stack.graph_workers.items():
        owner = (graph_dir / f"shard-{shard}.kuzu.owner").read_text().split()[1]
        assert parent_of(int(owner)) == worker.pid  # the pool process of graph worker <shard>
        owners[shard] = owner
        with pytest.raises(GraphStoreLocked):  # and nobody else gets in
            KuzuGraphStore(KuzuConfig(path=graph_dir, shard=shard)).ping()
    assert len(set(owners.values())) == SHARDS
    # A message for shard 1 forced onto graph.0 is refused by the worker of shard 0, not served.
    c, sender = api_side
    key = f"{c.settings.redis.key_prefix}graph:reply:misrouted"
    sender.send_task(rpc.READ_TASK, queue="graph.0", kwargs={
        "shard": 1, "op": "entities", "params": {"project_id": project_id, "ids": {"user_id": "x"}, "limit": 1},
        "reply_to": key, "deadline": time.time() + 30})
    answer = c.redis.blpop([key], timeout=30)
    assert answer is not None and b"WrongShard" in answer[1] and b"reached the worker of graph.0" in answer[1]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_search_with_enable_graph_and_delete_all_through_the_api(stack: Stack) -> None:
    stack.wait_job(stack.add({"messages": "I live in Quito. I work at a library.", "user_id": "api-g"}))
    body = {"query": "where does she live", "filters": {"user_id": "api-g"}, "enable_graph": True}
    found = stack.client.post("/v3/memories/search/", json=body).json()
    assert found["results"][0]["memory"] == "Lives in Quito" and found["relations_error"] is None
    assert {"source": "api-g", "relationship": "lives_in", "destination": "Quito"} in found["relations"]
    plain = stack.client.post("/v3/memories/search/", json={**body, "enable_graph": False}).json()
    assert plain["relations"] is None  # only asked for when enabled
    assert stack.client.delete("/v1/memories/", params={"user_id": "api-g"}).status_code == 200
    wait_until(lambda: relations(stack, user_id="api-g") == [])  # the clear runs on the shard, asynchronously
    assert stack.memories(user_id="api-g") == []


def test_search_degrades_while_a_graph_worker_is_down(
    stack: Stack, project_id: str, api_side: tuple[Container, Celery]
) -> None:
    c, sender = api_side
    user = user_on(1, project_id, "down")
    stack.wait_job(stack.add({"messages": "I live in Lima.", "user_id": user}))
    stack.kill(stack.graph_workers[1])
    found, problem = relations_for_search(c, sender, project_id, {"user_id": user}, "where do I live",
                                          timeout_seconds=0.5)
    assert found == [] and problem == "unavailable: no answer from graph.1 within 0.5s"
    assert stack.client.get("/v1/graph/relations/", params={"user_id": user}).status_code == 503
    # Ingest goes on: the memories are stored and searchable; the job waits for its graph branch.
    event_id = stack.add({"messages": "I work at Acme Corp.", "user_id": user})
    wait_until(lambda: "Works at Acme Corp" in [m["memory"] for m in stack.memories(user_id=user)])
    job = stack.client.get(f"/v1/event/{event_id}/").json()
    assert job["status"] == "RUNNING" and job["stage"] == "reconciled" and job["graph_status"] == "PENDING"
    stack.start_graph_worker(1, name="graph1-restarted")
    job = stack.wait_job(event_id)
    assert job["status"] == "SUCCEEDED" and job["graph_status"] == "DONE"
    assert job["relations"]["added"] == [{"source": user, "relationship": "works_at", "destination": "Acme Corp"}]
    found, problem = relations_for_search(c, sender, project_id, {"user_id": user}, "where do I live",
                                          timeout_seconds=10)
    assert problem is None and {"source": user, "relationship": "lives_in", "destination": "Lima"} in found


def wait_until(condition: Callable[[], bool], timeout_seconds: float = 60) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError("condition not met in time")
