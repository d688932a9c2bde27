"""Webhooks end to end: a real API process, a pipeline worker, a separate ``webhooks`` worker, and a real
HTTP receiver on loopback. Receivers dedupe by ``webhook-id``; signatures are checked with the independent
``standardwebhooks`` package. Retry waits are compressed through settings; every wait here is bounded.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from tests.stack import Stack
from tests.webhook_receiver import Answer, Receiver

os.environ["MEM0_TELEMETRY"] = "False"  # before mem0 is imported: no telemetry from tests

from mem0 import MemoryClient  # noqa: E402

pytestmark = pytest.mark.e2e
WAIT_SECONDS = 90
# ~20 s of retries: long enough to outlast the receiver being down in test_receiver_down_then_up.
SCHEDULE = [0.2, 0.4, 0.8] + [1.0] * 17
MEMORY_EVENTS = ["memory_add", "memory_update", "memory_delete"]
SECRETS: list[str] = []


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().up()
    yield r
    r.down()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, receiver: Receiver) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("webhooks"), redis_url,
        ENGRAM_WEBHOOKS__ALLOWED_NETWORKS='["127.0.0.1/32"]',  # loopback only, and only because tests say so
        ENGRAM_WEBHOOKS__RETRY_SCHEDULE_SECONDS=json.dumps(SCHEDULE),
        ENGRAM_WEBHOOKS__TIMEOUT_SECONDS="5",
    )
    try:
        s.start_api()
        s.api_key = s.new_key()
        s.client.headers["Authorization"] = f"Token {s.api_key}"
        s.start_worker(queues="llm,default")  # the pipeline never waits on a receiver ...
        s.start_worker(queues="webhooks", name="webhooks")  # ... deliveries have their own worker
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def project(stack: Stack) -> str:
    return str(stack.client.get("/v1/ping/").json()["project_id"])


@pytest.fixture
def hooks(stack: Stack) -> Iterator[list[str]]:
    """Webhooks a test creates, deleted after it so later tests' jobs do not feed them."""
    made: list[str] = []
    yield made
    for webhook_id in made:
        stack.client.delete(f"/api/v1/webhooks/{webhook_id}/")


def create_hook(stack: Stack, project: str, hooks: list[str], url: str, event_types: list[str]) -> dict[str, Any]:
    response = stack.client.post(f"/api/v1/webhooks/projects/{project}/",
                                 json={"url": url, "name": url.rsplit("/", 1)[-1], "event_types": event_types})
    assert response.status_code == 201, response.text
    hook = response.json()
    hooks.append(hook["webhook_id"])
    SECRETS.append(hook["secret"])
    return hook  # type: ignore[no-any-return]


def wait_until(check: Callable[[], Any], what: str, stack: Stack) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen in {WAIT_SECONDS}s:\n{stack.log('webhooks')}\n{stack.log('worker')}")


def deliveries(stack: Stack, webhook_id: str) -> list[dict[str, Any]]:
    response = stack.client.get(f"/api/v1/webhooks/{webhook_id}/deliveries/", params={"limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["results"]  # type: ignore[no-any-return]


def settled(stack: Stack, webhook_id: str, count: int) -> list[dict[str, Any]] | None:
    rows = deliveries(stack, webhook_id)
    done = len(rows) == count and all(d["status"] != "PENDING" for d in rows)
    return rows if done else None


def logical_events(receiver: Receiver, path: str, secret: str) -> dict[str, dict[str, Any]]:
    """What the receiver learnt: every request verified, duplicates (same webhook-id) collapsed."""
    seen: dict[str, dict[str, Any]] = {}
    for request in receiver.received(path):
        if request.answered // 100 != 2:
            continue
        payload = Verifier(secret).verify(request.body, request.headers)
        seen.setdefault(request.headers["webhook-id"], payload)
    return seen


def test_add_update_delete_each_arrive_once_signed(stack: Stack, project: str, receiver: Receiver,
                                                   hooks: list[str]) -> None:
    hook = create_hook(stack, project, hooks, receiver.url("/crud"), [*MEMORY_EVENTS, "job_succeeded"])
    jobs = [stack.wait_job(stack.add({"messages": text, "user_id": "wh-ana"}))
            for text in ("I work at a bakery. I eat meat.", "I work at a hospital now.", "I don't eat meat anymore.")]
    assert [[r["event"] for r in j["results"]] for j in jobs] == [["ADD", "ADD"], ["UPDATE"], ["DELETE"]]

    wait_until(lambda: settled(stack, hook["webhook_id"], 7), "7 deliveries (4 memory events, 3 jobs)", stack)
    events = logical_events(receiver, "/crud", hook["secret"])
    memory = sorted((p["type"], p["event_details"]["event"], p["event_details"]["data"]["memory"], p["job_id"])
                    for p in events.values() if p["type"].startswith("memory_"))
    assert memory == sorted([
        ("memory_add", "ADD", "Works at a bakery", jobs[0]["id"]),
        ("memory_add", "ADD", "Eats meat", jobs[0]["id"]),
        ("memory_update", "UPDATE", "Works at a hospital now", jobs[1]["id"]),
        ("memory_delete", "DELETE", "Eats meat", jobs[2]["id"]),
    ])
    ids = {(p["job_id"], p["event_details"]["id"]) for p in events.values() if p["type"].startswith("memory_")}
    assert ids == {(j["id"], r["id"]) for j in jobs for r in j["results"]}
    finished = [p for p in events.values() if p["type"] == "job_succeeded"]
    assert sorted(p["event_details"]["id"] for p in finished) == sorted(j["id"] for j in jobs)
    assert all(p["scope"] == {"user_id": "wh-ana"} and p["timestamp"] for p in events.values())
    assert {d["delivery_id"] for d in deliveries(stack, hook["webhook_id"])} == set(events)


def test_direct_edits_are_announced_too(stack: Stack, project: str, receiver: Receiver, hooks: list[str]) -> None:
    hook = create_hook(stack, project, hooks, receiver.url("/edits"), ["memory_update", "memory_delete"])
    job = stack.wait_job(stack.add({"messages": "I drive a blue van.", "user_id": "wh-edit"}))
    memory_id = job["results"][0]["id"]
    assert stack.client.put(f"/v1/memories/{memory_id}/", json={"text": "Drives a red van"}).status_code == 200
    assert stack.client.delete(f"/v1/memories/{memory_id}/").status_code == 200
    wait_until(lambda: settled(stack, hook["webhook_id"], 2), "2 deliveries (an update and a delete)", stack)
    events = logical_events(receiver, "/edits", hook["secret"])
    got = sorted((p["type"], p["event_details"]["id"], p["event_details"]["data"]["memory"]) for p in events.values())
    assert got == [("memory_delete", memory_id, "Drives a red van"), ("memory_update", memory_id, "Drives a red van")]
    update = next(p for p in events.values() if p["type"] == "memory_update")
    assert update["event_details"]["data"]["previous_memory"] == "Drives a blue van"
    assert update["scope"] == {"user_id": "wh-edit"}


def test_receiver_down_then_up_loses_nothing(stack: Stack, project: str, receiver: Receiver,
                                             hooks: list[str]) -> None:
    hook = create_hook(stack, project, hooks, receiver.url("/flaky"), ["memory_add"])
    receiver.down()
    try:
        jobs = [stack.wait_job(stack.add({"messages": text, "user_id": "wh-down"}))
                for text in ("I play the violin. I live in Porto.", "I have a dog named Rex.")]
        expected = {(j["id"], r["id"], r["memory"]) for j in jobs for r in j["results"]}
        assert len(expected) == 3

        def retried() -> bool:
            rows = deliveries(stack, hook["webhook_id"])
            return len(rows) == 3 and all(d["attempts"] >= 2 and d["status"] == "PENDING" for d in rows)

        wait_until(retried, "retries while the receiver is down", stack)
    finally:
        receiver.up()  # the same port again
    rows = wait_until(lambda: settled(stack, hook["webhook_id"], 3), "delivery once the receiver is back", stack)
    assert {d["status"] for d in rows} == {"SUCCEEDED"}
    attempts = stack.client.get(
        f"/api/v1/webhooks/{hook['webhook_id']}/deliveries/{rows[0]['delivery_id']}/attempts/"
    ).json()
    assert attempts[-1]["outcome"] == "succeeded" and all(a["outcome"] == "retry" for a in attempts[:-1])
    assert "connection failed" in attempts[0]["error"]
    events = logical_events(receiver, "/flaky", hook["secret"])
    got = {(p["job_id"], p["event_details"]["id"], p["event_details"]["data"]["memory"]) for p in events.values()}
    assert got == expected


def test_gone_disables_the_webhook(stack: Stack, project: str, receiver: Receiver, hooks: list[str]) -> None:
    hook = create_hook(stack, project, hooks, receiver.url("/gone"), ["memory_add"])
    receiver.answer("/gone", Answer(410))
    stack.wait_job(stack.add({"messages": "I collect stamps.", "user_id": "wh-gone"}))
    [row] = wait_until(lambda: settled(stack, hook["webhook_id"], 1), "the 410 answer", stack)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("FAILED", 1, 410)
    state = stack.client.get(f"/api/v1/webhooks/{hook['webhook_id']}/").json()
    assert state["is_active"] is False and "410" in state["disabled_reason"]

    stack.wait_job(stack.add({"messages": "I collect coins.", "user_id": "wh-gone"}))
    assert len(deliveries(stack, hook["webhook_id"])) == 1  # a disabled webhook gets no new deliveries
    assert stack.client.post(f"/api/v1/webhooks/{hook['webhook_id']}/replay-failed/").status_code == 409

    assert stack.client.put(f"/api/v1/webhooks/{hook['webhook_id']}/", json={"is_active": True}).status_code == 200
    replay = stack.client.post(f"/api/v1/webhooks/{hook['webhook_id']}/replay-failed/")
    assert replay.status_code == 202 and replay.json()["delivery_ids"] == [row["delivery_id"]]
    [done] = wait_until(lambda: settled(stack, hook["webhook_id"], 1), "the replay", stack)
    assert done["status"] == "SUCCEEDED"
    assert [r.headers["webhook-id"] for r in receiver.received("/gone")] == [row["delivery_id"]] * 2


def test_bad_request_is_not_retried_and_can_be_replayed(stack: Stack, project: str, receiver: Receiver,
                                                         hooks: list[str]) -> None:
    hook = create_hook(stack, project, hooks, receiver.url("/bad"), ["memory_add"])
    receiver.answer("/bad", Answer(400, body=b"schema mismatch " * 500))
    stack.wait_job(stack.add({"messages": "I drink green tea.", "user_id": "wh-bad"}))
    [row] = wait_until(lambda: settled(stack, hook["webhook_id"], 1), "the 400 answer", stack)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("FAILED", 1, 400)
    url = f"/api/v1/webhooks/{hook['webhook_id']}/deliveries/{row['delivery_id']}/"
    [attempt] = stack.client.get(url + "attempts/").json()
    assert attempt["outcome"] == "failed" and attempt["status_code"] == 400 and attempt["duration_ms"] >= 0
    assert attempt["response_body"].startswith("schema mismatch") and len(attempt["response_body"]) == 2000
    assert len(receiver.received("/bad")) == 1

    assert stack.client.post(url + "replay/").status_code == 202
    [done] = wait_until(lambda: settled(stack, hook["webhook_id"], 1), "the replay", stack)
    assert (done["status"], done["attempts"]) == ("SUCCEEDED", 2)
    assert [r.headers["webhook-id"] for r in receiver.received("/bad")] == [row["delivery_id"]] * 2


def test_too_many_requests_waits_for_retry_after(stack: Stack, project: str, receiver: Receiver,
                                                 hooks: list[str]) -> None:
    hook = create_hook(stack, project, hooks, receiver.url("/busy"), ["memory_add"])
    receiver.answer("/busy", Answer(429, {"Retry-After": "2"}))
    stack.wait_job(stack.add({"messages": "I sail on weekends.", "user_id": "wh-busy"}))
    [row] = wait_until(lambda: settled(stack, hook["webhook_id"], 1), "delivery after the 429", stack)
    assert (row["status"], row["attempts"]) == ("SUCCEEDED", 2)
    first, second = stack.client.get(
        f"/api/v1/webhooks/{hook['webhook_id']}/deliveries/{row['delivery_id']}/attempts/"
    ).json()
    assert (first["outcome"], first["status_code"], second["outcome"]) == ("retry", 429, "succeeded")
    planned = datetime.fromisoformat(first["next_attempt_at"]) - datetime.fromisoformat(first["created_at"])
    assert planned.total_seconds() >= 1.9  # Retry-After, not the schedule's 0.2 s
    early, late = receiver.received("/busy")
    assert late.at - early.at >= 1.9 and early.headers["webhook-id"] == late.headers["webhook-id"]


def test_event_stream_follows_a_job(stack: Stack) -> None:
    event_id = stack.add({"messages": "I grow tomatoes. I own a tandem bike.", "user_id": "wh-sse"})
    blocks: list[tuple[str, dict[str, Any]]] = []
    with httpx.Client(base_url=stack.base_url, headers=stack.client.headers, timeout=WAIT_SECONDS) as client, \
            client.stream("GET", f"/v1/event/{event_id}/stream") as response:
        assert response.status_code == 200
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                blocks.append((kind, json.loads(line[6:])))
    kinds = [k for k, _ in blocks]
    assert kinds[0] == "stage" and kinds[-1] == "end" and kinds.count("end") == 1
    assert blocks[-1][1]["status"] == "SUCCEEDED"
    stages = [d["stage"] for k, d in blocks if k == "stage"]
    order = ["queued", "extracted", "embedded", "reconciled", "notified"]
    assert [order.index(s) for s in stages] == sorted(order.index(s) for s in stages)
    job = stack.client.get(f"/v1/event/{event_id}/").json()
    assert [d for k, d in blocks if k == "memory"] == job["results"] and len(job["results"]) == 2


def test_the_official_client_manages_webhooks(stack: Stack, project: str, receiver: Receiver) -> None:
    client = MemoryClient(api_key=stack.api_key, host=stack.base_url)
    assert client.project_id == project
    created = client.create_webhook(url=receiver.url("/mem0"), name="mem0 client", project_id=client.project_id,
                                    event_types=["memory_add"])
    SECRETS.append(created["secret"])
    listed = client.get_webhooks(project_id=client.project_id)
    assert created["webhook_id"] in [w["webhook_id"] for w in listed]
    updated = client.update_webhook(webhook_id=created["webhook_id"], name="renamed",
                                    event_types=["memory_add", "memory_update"])
    assert updated["name"] == "renamed" and updated["event_types"] == ["memory_add", "memory_update"]
    assert client.delete_webhook(webhook_id=created["webhook_id"])["message"] == "Webhook deleted successfully"
    assert created["webhook_id"] not in [w["webhook_id"] for w in client.get_webhooks(project_id=project)]


def test_secrets_never_reach_the_logs(stack: Stack) -> None:
    assert SECRETS, "runs after the tests that create webhooks"
    logs = "".join(stack.log(name) + (stack.workdir / f"{name}.log").read_text(errors="replace")
                   for name in ("api", "worker", "webhooks"))
    for secret in SECRETS:
        assert secret not in logs and secret.removeprefix("whsec_") not in logs
