"""Outbox, claim tokens, attempts and replay against SQLite and PostgreSQL (the ``sql_engine`` fixture),
with a fake sender: no network."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from config.settings import WebhookSettings
from engram.webhooks import outbox
from engram.webhooks.deliver import SendResult, deliver
from engram.webhooks.store import FAILED, PENDING, SUCCEEDED, WebhookStore
from engram.webhooks.targets import Target
from schemas.jobs import MemoryEvent

EVENTS = [
    MemoryEvent(id="m1", memory="Lives in Lisbon", event="ADD"),
    MemoryEvent(id="m2", memory="Works at a hospital", event="UPDATE", previous_memory="Works at a bakery"),
    MemoryEvent(id="m3", memory="Eats meat", event="DELETE"),
]
SETTINGS = WebhookSettings(retry_schedule_seconds=[0.01, 0.01], jitter=0, allow_private_targets=True)


def public(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


class FakeSender:
    def __init__(self, *results: SendResult) -> None:
        self.results = list(results)
        self.calls: list[dict[str, str]] = []

    def __call__(self, target: Target, headers: dict[str, str], body: bytes, settings: WebhookSettings) -> SendResult:
        self.calls.append(headers)
        return self.results.pop(0) if self.results else SendResult(200)


def write(engine: sa.Engine, job_id: str = "job-1", project: str = "p1") -> list[tuple[str, int]]:
    now = datetime.now(UTC)
    items = outbox.memory_events(EVENTS, job_id=job_id, project_id=project, scope={"user_id": "ana"}, at=now)
    with engine.begin() as conn:
        return outbox.write(conn, project, job_id, items, now)


def test_outbox_is_idempotent_and_follows_subscriptions(sql_engine: sa.Engine) -> None:
    store = WebhookStore(sql_engine)
    everything = store.create("p1", "all", "https://a.example/", ["memory_add", "memory_update", "memory_delete"])
    adds = store.create("p1", "adds", "https://b.example/", ["memory_add"])
    paused = store.create("p1", "paused", "https://c.example/", ["memory_add"])
    store.update(paused.id, "p1", is_active=False)
    store.create("p2", "other project", "https://d.example/", ["memory_add"])

    first = write(sql_engine)
    assert len(first) == 4  # 3 events for "all", 1 for "adds", none for the paused one or project p2
    assert write(sql_engine) == first  # a redelivered stage: no second row, the same ids to (re)send
    assert store.deliveries(everything.id)[0] == 3 and store.deliveries(adds.id)[0] == 1
    assert store.deliveries(paused.id)[0] == 0
    _, rows = store.deliveries(everything.id)
    bodies = {json.loads(d.body)["event_details"]["event"]: json.loads(d.body) for d in rows}
    assert bodies["UPDATE"]["event_details"] == {
        "id": "m2", "data": {"memory": "Works at a hospital", "previous_memory": "Works at a bakery"}, "event": "UPDATE"
    }
    assert bodies["ADD"]["type"] == "memory_add" and bodies["ADD"]["scope"] == {"user_id": "ana"}
    assert bodies["ADD"]["job_id"] == bodies["ADD"]["event_id"] == "job-1"
    assert write(sql_engine, job_id="job-2") != first  # another job's events are other deliveries


def test_outbox_rolls_back_with_the_events(sql_engine: sa.Engine) -> None:
    store = WebhookStore(sql_engine)
    hook = store.create("p1", "all", "https://a.example/", ["memory_add"])
    now = datetime.now(UTC)
    items = outbox.memory_events(EVENTS, job_id="j", project_id="p1", scope={}, at=now)
    try:
        with sql_engine.begin() as conn:
            outbox.write(conn, "p1", "j", items, now)
            raise RuntimeError("the stage failed before its commit")
    except RuntimeError:
        pass
    assert store.deliveries(hook.id)[0] == 0


def test_claim_token_lets_one_message_send_each_attempt(sql_engine: sa.Engine) -> None:
    store = WebhookStore(sql_engine)
    hook = store.create("p1", "h", "https://a.example/", ["memory_add"])
    [(delivery_id, token)] = write(sql_engine)
    sender = FakeSender(SendResult(503))
    step = deliver(store, SETTINGS, delivery_id, token, send=sender, resolve=public, rng=random.Random(1))
    assert step.wait_seconds is not None and step.expected_attempts == 1
    # a duplicate of the first message (broker redelivery) and a message of the right token
    assert deliver(store, SETTINGS, delivery_id, 0, send=sender, resolve=public).wait_seconds is None
    delivery = store.delivery(delivery_id)
    assert delivery is not None and delivery.status == PENDING and delivery.attempts == 1
    store.claim(delivery_id, 1, datetime.now(UTC) + timedelta(seconds=5), 60)  # someone else is sending
    assert deliver(store, SETTINGS, delivery_id, 2, send=sender, resolve=public).wait_seconds is None
    assert len(sender.calls) == 1
    assert {c["webhook-id"] for c in sender.calls} == {delivery_id}
    store_due(sql_engine, delivery_id, in_seconds=3600)  # a retry an hour away: the task waits (in hops)
    waiting = deliver(store, SETTINGS, delivery_id, 2, send=sender, resolve=public)
    assert waiting.expected_attempts == 2 and 3500 < (waiting.wait_seconds or 0) <= 3600
    assert len(sender.calls) == 1
    assert [a["outcome"] for a in store.attempts(delivery_id)] == ["retry"]
    assert hook.id == delivery.webhook_id


def test_retries_then_fails_then_replays_with_the_same_id(sql_engine: sa.Engine) -> None:
    store = WebhookStore(sql_engine)
    store.create("p1", "h", "https://a.example/", ["memory_add"])
    [(delivery_id, token)] = write(sql_engine)
    sender = FakeSender(SendResult(500), SendResult(error="timeout after 1s"), SendResult(502, response_body="bad"))
    step = deliver(store, SETTINGS, delivery_id, token, send=sender, resolve=public)
    while step.wait_seconds is not None:
        later = store.delivery(delivery_id)
        assert later is not None and later.next_attempt_at is not None
        store_due(sql_engine, delivery_id)
        step = deliver(store, SETTINGS, delivery_id, step.expected_attempts, send=sender, resolve=public)
    failed = store.delivery(delivery_id)
    assert failed is not None and failed.status == FAILED and failed.attempts == 3
    log = store.attempts(delivery_id)
    assert [(a["outcome"], a["status_code"]) for a in log] == [("retry", 500), ("retry", None), ("failed", 502)]
    assert "timeout" in log[1]["error"] and log[2]["response_body"] == "bad" and "gave up" in log[2]["error"]

    [(replayed, token)] = store.replay([delivery_id])
    assert replayed == delivery_id and token == 3
    assert deliver(store, SETTINGS, delivery_id, token, send=sender, resolve=public).wait_seconds is None
    done = store.delivery(delivery_id)
    assert done is not None and done.status == SUCCEEDED and done.delivered_at is not None
    assert {c["webhook-id"] for c in sender.calls} == {delivery_id}  # receivers dedupe across replays


def store_due(engine: sa.Engine, delivery_id: str, in_seconds: float = 0) -> None:
    """Set when the next attempt is due (the schedule's waits are the task's business, not this test's)."""
    from engram.sql import tables

    d = tables.webhook_deliveries
    due = datetime.now(UTC) + timedelta(seconds=in_seconds)
    with engine.begin() as conn:
        conn.execute(sa.update(d).where(d.c.id == delivery_id).values(next_attempt_at=due, claimed_until=None))


def test_gone_disables_and_disabled_webhooks_send_nothing(sql_engine: sa.Engine) -> None:
    store = WebhookStore(sql_engine)
    hook = store.create("p1", "h", "https://a.example/", ["memory_add", "memory_update"])
    (first, t1), (second, t2) = write(sql_engine)
    sender = FakeSender(SendResult(410))
    deliver(store, SETTINGS, first, t1, send=sender, resolve=public)
    disabled = store.get(hook.id)
    assert disabled is not None and not disabled.is_active and "410" in (disabled.disabled_reason or "")
    assert deliver(store, SETTINGS, second, t2, send=sender, resolve=public).wait_seconds is None
    assert len(sender.calls) == 1  # the second delivery was not sent
    assert [d.status for d in store.deliveries(hook.id)[1]] == [FAILED, FAILED]
    assert write(sql_engine, job_id="job-after") == []  # and no new deliveries while disabled
    store.update(hook.id, "p1", is_active=True)
    enabled = store.get(hook.id)
    assert enabled is not None and enabled.is_active and enabled.disabled_reason is None


def test_private_target_is_refused_at_delivery_time(sql_engine: sa.Engine) -> None:
    store = WebhookStore(sql_engine)
    store.create("p1", "h", "https://rebinding.example/", ["memory_add"])
    [(delivery_id, token)] = write(sql_engine)
    sender = FakeSender()
    strict = WebhookSettings()
    deliver(store, strict, delivery_id, token, send=sender, resolve=lambda h, p: ["169.254.169.254"])
    assert sender.calls == []
    [attempt] = store.attempts(delivery_id)
    assert attempt["outcome"] == "failed" and "target refused" in attempt["error"]


def test_rotation_signs_with_both_secrets_during_the_grace_period(sql_engine: sa.Engine) -> None:
    store = WebhookStore(sql_engine)
    hook = store.create("p1", "h", "https://a.example/", ["memory_add"])
    rotated = store.rotate_secret(hook.id, "p1", grace_seconds=60)
    assert rotated is not None and rotated.secret != hook.secret
    assert rotated.signing_secrets(datetime.now(UTC)) == [rotated.secret, hook.secret]
    assert rotated.signing_secrets(datetime.now(UTC) + timedelta(seconds=61)) == [rotated.secret]
    again = store.rotate_secret(hook.id, "p1", grace_seconds=0)
    assert again is not None and again.signing_secrets(datetime.now(UTC)) == [again.secret]


def test_overdue_finds_lost_messages_and_delete_cascades(sql_engine: sa.Engine) -> None:
    store = WebhookStore(sql_engine)
    hook = store.create("p1", "h", "https://a.example/", ["memory_add"])
    before = datetime.now(UTC)
    [(delivery_id, _)] = write(sql_engine)
    assert store.overdue(before + timedelta(seconds=30), grace_seconds=60) == []
    assert store.overdue(datetime.now(UTC) + timedelta(seconds=61), grace_seconds=60) == [(delivery_id, 0)]
    deliver(store, SETTINGS, delivery_id, 0, send=FakeSender(), resolve=public)
    assert store.overdue(datetime.now(UTC) + timedelta(days=1), grace_seconds=60) == []
    assert store.delete(hook.id, "p2") is False
    assert store.delete(hook.id, "p1") is True
    assert store.delivery(delivery_id) is None and store.attempts(delivery_id) == []
