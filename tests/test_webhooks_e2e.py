"""Webhooks end to end: a real API process, a pipeline worker, a separate ``webhooks`` worker, and a real
HTTP receiver on loopback. Each ``webhook-id`` must be accepted (answered 2xx) by the receiver exactly once;
signatures are checked with the independent ``standardwebhooks`` package. Retry waits and the secret grace
period are compressed through settings; every wait here is bounded, and no assertion is on a duration.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from engram.webhooks.signing import new_secret
from engram.webhooks.store import DUE_TOLERANCE
from tests.stack import Stack
from tests.webhook_receiver import Answer, Received, Receiver

os.environ["MEM0_TELEMETRY"] = "False"  # before mem0 is imported: no telemetry from tests

from mem0 import MemoryClient  # noqa: E402

pytestmark = pytest.mark.e2e
WAIT_SECONDS = 90
# ~20 s of retries: long enough to outlast the receiver being down in test_receiver_down_then_up.
SCHEDULE = [0.2, 0.4, 0.8] + [1.0] * 17
MEMORY_EVENTS = ["memory_add", "memory_update", "memory_delete"]
# A rotated-out secret keeps signing this long (the setting, compressed): long enough for a replay to reach the
# webhooks worker on a busy machine; the rotation test then waits the rest of it out.
GRACE_SECONDS = 6


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
        ENGRAM_WEBHOOKS__SECRET_GRACE_SECONDS=str(GRACE_SECONDS),
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


def accepted_once(receiver: Receiver, path: str, secret: str) -> dict[str, dict[str, Any]]:
    """What the receiver accepted (answered 2xx), verified, by ``webhook-id``; each id exactly once. Requests
    it turned away (non-2xx while failing) may repeat: that is retrying, not a duplicate."""
    accepted = [r for r in receiver.received(path) if r.accepted]
    twice = {i: n for i, n in Counter(r.headers["webhook-id"] for r in accepted).items() if n > 1}
    assert not twice, f"accepted more than once (webhook-id: times): {twice}"
    return {r.headers["webhook-id"]: Verifier(secret).verify(r.body, r.headers) for r in accepted}


def attempts_of(stack: Stack, webhook_id: str, delivery_id: str) -> list[dict[str, Any]]:
    response = stack.client.get(f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/attempts/")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def rotate(stack: Stack, webhook_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = stack.client.post(f"/api/v1/webhooks/{webhook_id}/rotate-secret/", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def waiting_retry(stack: Stack, webhook_id: str) -> list[dict[str, Any]] | None:
    """The webhook's one delivery, once its first attempt was answered with an error and it waits for the next
    (``attempts`` counts an attempt from its claim: the answer is in once ``last_status_code`` is)."""
    rows = deliveries(stack, webhook_id)
    waiting = len(rows) == 1 and rows[0]["attempts"] == 1 and rows[0]["status"] == "PENDING"
    return rows if waiting and rows[0]["last_status_code"] is not None else None


def test_add_update_delete_each_arrive_once_signed(stack: Stack, project: str, receiver: Receiver,
                                                   hooks: list[str]) -> None:
    hook = create_hook(stack, project, hooks, receiver.url("/crud"), [*MEMORY_EVENTS, "job_succeeded"])
    jobs = [stack.wait_job(stack.add({"messages": text, "user_id": "wh-ana"}))
            for text in ("I work at a bakery. I eat meat.", "I work at a hospital now.", "I don't eat meat anymore.")]
    assert [[r["event"] for r in j["results"]] for j in jobs] == [["ADD", "ADD"], ["UPDATE"], ["DELETE"]]

    wait_until(lambda: settled(stack, hook["webhook_id"], 7), "7 deliveries (4 memory events, 3 jobs)", stack)
    events = accepted_once(receiver, "/crud", hook["secret"])
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
    events = accepted_once(receiver, "/edits", hook["secret"])
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
            return len(rows) == 3 and all(d["attempts"] >= 7 and d["status"] == "PENDING" for d in rows)

        wait_until(retried, "retries while the receiver is down", stack)
        # Back, but failing at first: whichever two requests come first are turned away.
        receiver.answer("/flaky", Answer(503, body=b"starting up"), Answer(503, body=b"starting up"))
    finally:
        receiver.up()  # the same port again
    rows = wait_until(lambda: settled(stack, hook["webhook_id"], 3), "delivery once the receiver is back", stack)
    assert {d["status"] for d in rows} == {"SUCCEEDED"}
    log = {d["delivery_id"]: attempts_of(stack, hook["webhook_id"], d["delivery_id"]) for d in rows}
    for attempts in log.values():
        assert attempts[-1]["outcome"] == "succeeded" and all(a["outcome"] == "retry" for a in attempts[:-1])
        assert "connection failed" in attempts[0]["error"]  # a later one claimed while down may land once it is up
    events = accepted_once(receiver, "/flaky", hook["secret"])
    got = {(p["job_id"], p["event_details"]["id"], p["event_details"]["data"]["memory"]) for p in events.values()}
    assert got == expected and set(events) == set(log)
    # The attempt log and the receiver agree: every request that reached it is an attempt with its answer.
    seen = receiver.received("/flaky")
    answered = sorted(a["status_code"] for attempts in log.values() for a in attempts if a["status_code"] is not None)
    assert answered == sorted(r.answered for r in seen) == [200, 200, 200, 503, 503]
    refused = [a for attempts in log.values() for a in attempts if a["status_code"] is None]
    assert all("connection failed" in a["error"] for a in refused)
    times = sorted(datetime.fromisoformat(a["created_at"]) for a in refused)
    print(f"RELIABILITY webhook receiver down ~{(times[-1] - times[0]).total_seconds():.1f}s: 3 events, "
          f"{len(refused)} attempts refused ({', '.join(str(len(a)) for a in log.values())} attempts per delivery), "
          f"2 turned away with 503, {len(events)} accepted once each, lost {len(expected - got)}")


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
    retry_after_seconds = 2  # the schedule's first step is 0.2 s (± jitter)
    hook = create_hook(stack, project, hooks, receiver.url("/busy"), ["memory_add"])
    receiver.answer("/busy", Answer(429, {"Retry-After": str(retry_after_seconds)}))
    stack.wait_job(stack.add({"messages": "I sail on weekends.", "user_id": "wh-busy"}))
    [row] = wait_until(lambda: settled(stack, hook["webhook_id"], 1), "delivery after the 429", stack)
    assert (row["status"], row["attempts"]) == ("SUCCEEDED", 2)
    first, second = attempts_of(stack, hook["webhook_id"], row["delivery_id"])
    assert (first["outcome"], first["status_code"], second["outcome"]) == ("retry", 429, "succeeded")
    early, late = receiver.received("/busy")
    assert early.headers["webhook-id"] == late.headers["webhook-id"] == row["delivery_id"]
    assert (early.answered, late.answered) == (429, 200)
    # Orderings of recorded times, which a slow machine cannot break (it only makes things later):
    # the retry was planned Retry-After after the receiver said 429 (it heard the 429 after the receiver
    # sent it), not on the schedule ...
    planned = datetime.fromisoformat(first["next_attempt_at"])
    assert planned.timestamp() >= early.wall + retry_after_seconds
    # ... and the second attempt was not made before it was due (a claim allows DUE_TOLERANCE of clock skew).
    assert datetime.fromisoformat(second["created_at"]) >= planned - DUE_TOLERANCE


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
    listed = client.get_webhooks(project_id=client.project_id)
    assert created["webhook_id"] in [w["webhook_id"] for w in listed]
    updated = client.update_webhook(webhook_id=created["webhook_id"], name="renamed",
                                    event_types=["memory_add", "memory_update"])
    assert updated["name"] == "renamed" and updated["event_types"] == ["memory_add", "memory_update"]
    assert client.delete_webhook(webhook_id=created["webhook_id"])["message"] == "Webhook deleted successfully"
    assert created["webhook_id"] not in [w["webhook_id"] for w in client.get_webhooks(project_id=project)]


def signatures(request: Received) -> list[str]:
    return request.headers["webhook-signature"].split()


def test_a_rotated_secret_signs_alongside_the_new_one_until_its_grace_ends(
    stack: Stack, project: str, receiver: Receiver, hooks: list[str]
) -> None:
    """Before a rotation only the old secret signs; during the grace period (the setting, small here) both do,
    so a receiver holding either one verifies; after it only the new one does. The event is held back (a 503
    with a long Retry-After) until the secret is rotated, then replayed: its send falls inside the grace
    period however long the job took on a busy machine."""
    hook = create_hook(stack, project, hooks, receiver.url("/rotate"), ["memory_add"])
    old = hook["secret"]
    receiver.answer("/rotate", Answer(503, {"Retry-After": "600"}))
    job = stack.wait_job(stack.add({"messages": "I keep bees.", "user_id": "wh-rotate"}))
    assert job["status"] == "SUCCEEDED" and len(job["results"]) == 1, job
    [held] = wait_until(lambda: waiting_retry(stack, hook["webhook_id"]), "the first attempt, turned away", stack)
    [before] = receiver.received("/rotate")
    assert before.answered == 503 and len(signatures(before)) == 1
    assert Verifier(old).verify(before.body, before.headers)["event_details"]["id"] == job["results"][0]["id"]

    rotated = rotate(stack, hook["webhook_id"])
    new = rotated["secret"]
    assert new.startswith("whsec_") and new != old and rotated["secret_hint"] == f"whsec_…{new[-4:]}"
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert expires - datetime.fromisoformat(rotated["updated_at"]) == timedelta(seconds=GRACE_SECONDS)  # the setting
    replay = stack.client.post(f"/api/v1/webhooks/{hook['webhook_id']}/deliveries/{held['delivery_id']}/replay/")
    assert replay.status_code == 202, replay.text
    [row] = wait_until(lambda: settled(stack, hook["webhook_id"], 1), "the replay after the rotation", stack)
    assert (row["status"], row["attempts"]) == ("SUCCEEDED", 2)
    [during] = [r for r in receiver.received("/rotate") if r.accepted]
    assert during.headers["webhook-id"] == held["delivery_id"] and during.body == before.body
    sent_at = int(during.headers["webhook-timestamp"])
    late = f"sent at {sent_at}, after the grace period ({GRACE_SECONDS} s, to {expires}): raise GRACE_SECONDS"
    assert sent_at < expires.timestamp() and len(signatures(during)) == 2, late
    with_old = Verifier(old).verify(during.body, during.headers)
    with_new = Verifier(new).verify(during.body, during.headers)
    assert with_old == with_new and with_new["type"] == "memory_add"
    with pytest.raises(WebhookVerificationError):
        Verifier(new_secret()).verify(during.body, during.headers)  # the check can fail: a stranger's secret

    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)  # at most GRACE_SECONDS
    second = stack.wait_job(stack.add({"messages": "I keep goats.", "user_id": "wh-rotate"}))
    assert second["status"] == "SUCCEEDED" and len(second["results"]) == 1, second
    wait_until(lambda: settled(stack, hook["webhook_id"], 2), "the delivery after the grace period", stack)
    [after] = [r for r in receiver.received("/rotate") if r.accepted and r.headers["webhook-id"] != held["delivery_id"]]
    assert int(after.headers["webhook-timestamp"]) >= int(expires.timestamp()) and len(signatures(after)) == 1
    assert Verifier(new).verify(after.body, after.headers)["event_details"]["id"] == second["results"][0]["id"]
    with pytest.raises(WebhookVerificationError):
        Verifier(old).verify(after.body, after.headers)
    assert stack.client.get(f"/api/v1/webhooks/{hook['webhook_id']}/").json()["secret"] is None


def redis_dump(client: redis.Redis, prefix: str) -> tuple[int, str]:
    """How many keys lie under the stack's prefix, and every value in them (queues, unacked messages, locks)."""
    keys, parts = 0, []
    for key in client.scan_iter(match=prefix + "*", count=500):
        keys += 1
        parts.append(repr(key))
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind == "string":
            parts.append(repr(client.get(key)))
        elif kind == "list":
            parts += [repr(v) for v in client.lrange(key, 0, -1)]
        elif kind == "hash":
            parts += [repr(v) for v in client.hgetall(key).items()]
        elif kind == "set":
            parts += [repr(v) for v in client.smembers(key)]
        elif kind == "zset":
            parts += [repr(v) for v in client.zrange(key, 0, -1)]
    return keys, "\n".join(parts)


def test_secrets_never_reach_the_logs(stack: Stack, project: str, receiver: Receiver, hooks: list[str]) -> None:
    """A webhook of its own, rotated (two secrets sign), a failing attempt then a success: neither secret,
    nor its base64 key part, is in any process log, in Redis under the stack's prefix, in the stored
    delivery and attempt rows (request body, answers, errors) or in the API's answers after creation."""
    hook = create_hook(stack, project, hooks, receiver.url("/secret"), ["memory_add"])
    rotated = rotate(stack, hook["webhook_id"], {"grace_seconds": 3600})  # both sign, however slow the job
    secrets = {"first secret": hook["secret"], "rotated secret": rotated["secret"]}
    # The failing answer is stored; its Retry-After keeps the retry's message waiting in Redis for a while.
    receiver.answer("/secret", Answer(503, {"Retry-After": "3"}, body=b"busy, try again"))
    job = stack.wait_job(stack.add({"messages": "I hide a spare key under the mat.", "user_id": "wh-secret"}))
    assert job["status"] == "SUCCEEDED" and len(job["results"]) == 1, job
    [waiting] = wait_until(lambda: waiting_retry(stack, hook["webhook_id"]), "the first, failing attempt", stack)
    prefix = stack.env["ENGRAM_REDIS__KEY_PREFIX"]
    client = redis.Redis.from_url(stack.env["ENGRAM_REDIS__URL"])
    redis_views: list[tuple[int, str]] = []

    def retried() -> list[dict[str, Any]] | None:
        redis_views.append(redis_dump(client, prefix))  # while the retry waits, and once it is done
        return settled(stack, hook["webhook_id"], 1)

    [row] = wait_until(retried, "the retry", stack)
    client.close()
    assert (row["delivery_id"], row["status"], row["attempts"]) == (waiting["delivery_id"], "SUCCEEDED", 2)
    attempts = attempts_of(stack, hook["webhook_id"], row["delivery_id"])
    assert [(a["outcome"], a["status_code"]) for a in attempts] == [("retry", 503), ("succeeded", 200)]
    [accepted] = [r for r in receiver.received("/secret") if r.accepted]
    for secret in secrets.values():  # both secrets were in use: each verifies what was sent
        Verifier(secret).verify(accepted.body, accepted.headers)

    # Where to look, and proof that each place holds this webhook's traces.
    logs = {p.name: p.read_text(errors="replace") for p in stack.workdir.glob("*.log")}
    assert {"api.log", "worker.log", "webhooks.log"} <= set(logs)
    assert f"webhook {hook['webhook_id']} delivery {row['delivery_id']}" in logs["webhooks.log"]
    assert all(keys > 0 for keys, _ in redis_views)
    assert any(row["delivery_id"] in text for _, text in redis_views)  # the retry's message, waiting in Redis
    database = sqlite3.connect(stack.env["ENGRAM_SQL__URL"].removeprefix("sqlite:///"))
    try:
        stored = [repr(r) for table in ("webhook_deliveries", "webhook_attempts")
                  for r in database.execute(f"SELECT * FROM {table} WHERE webhook_id = ?", (hook["webhook_id"],))]
    finally:
        database.close()
    assert len(stored) == 3 and any("busy, try again" in r for r in stored)
    assert any(row["delivery_id"] in r and job["results"][0]["memory"] in r for r in stored)
    answers = json.dumps([stack.client.get(f"/api/v1/webhooks/{hook['webhook_id']}/").json(),
                          stack.client.get(f"/api/v1/webhooks/projects/{project}/").json(),
                          deliveries(stack, hook["webhook_id"]), attempts])
    places = {**logs, **{f"Redis (view {i})": text for i, (_, text) in enumerate(redis_views)},
              "delivery and attempt rows": "\n".join(stored), "API answers": answers}
    for what, secret in secrets.items():
        for form in (secret, secret.removeprefix("whsec_")):
            for place, text in places.items():
                assert form not in text, f"{what} ({form[:10]}…) in {place}"
