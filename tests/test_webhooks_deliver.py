"""The retry decision table, and ``send_http`` (alone and through ``deliver`` with a real SQL store)
against a real receiver on loopback."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import sqlalchemy as sa

from config.settings import WebhookSettings
from engram.webhooks import outbox
from engram.webhooks.deliver import SendResult, decide, deliver, parse_retry_after, policy_of, send_http
from engram.webhooks.store import PENDING, WebhookStore
from engram.webhooks.targets import check
from schemas.jobs import MemoryEvent
from tests.webhook_receiver import Answer, Receiver

SETTINGS = WebhookSettings(retry_schedule_seconds=[10, 20, 40], jitter=0.2, max_retry_after_seconds=600,
                           allowed_networks=["127.0.0.1/32"], timeout_seconds=0.5, max_response_chars=50)
RNG = random.Random(7)


@pytest.mark.parametrize(
    ("result", "kind"),
    [
        (SendResult(200), "succeeded"),
        (SendResult(204), "succeeded"),
        (SendResult(400), "failed"),
        (SendResult(401), "failed"),
        (SendResult(404), "failed"),
        (SendResult(422), "failed"),
        (SendResult(301), "failed"),  # redirects are not followed, nor retried
        (SendResult(408), "retry"),
        (SendResult(410), "disabled"),
        (SendResult(429), "retry"),
        (SendResult(500), "retry"),
        (SendResult(503), "retry"),
        (SendResult(error="timeout after 10s (ReadTimeout)"), "retry"),
        (SendResult(error="connection failed: [Errno 111] Connection refused"), "retry"),
        (SendResult(error="target refused: resolves to a private address", retryable=False), "failed"),
    ],
)
def test_decision_table(result: SendResult, kind: str) -> None:
    outcome = decide(result, 1, SETTINGS, RNG)
    assert outcome.kind == kind
    if kind == "retry":
        assert 8 <= (outcome.delay_seconds or 0) <= 12  # the first step, with ±20% jitter
    else:
        assert outcome.delay_seconds is None


def test_backoff_follows_the_schedule_then_gives_up() -> None:
    delays = [decide(SendResult(500), n, SETTINGS, RNG).delay_seconds for n in (1, 2, 3)]
    assert [round((d or 0) / s) for d, s in zip(delays, (10, 20, 40), strict=True)] == [1, 1, 1]
    last = decide(SendResult(500), 4, SETTINGS, RNG)
    assert last.kind == "failed" and "gave up after 4 attempts" in (last.reason or "")


def test_retry_after_is_honoured_and_capped() -> None:
    assert decide(SendResult(429, retry_after_seconds=3), 1, SETTINGS, RNG).delay_seconds == 3
    assert decide(SendResult(503, retry_after_seconds=10**6), 2, SETTINGS, RNG).delay_seconds == 600
    assert decide(SendResult(429, retry_after_seconds=3), 4, SETTINGS, RNG).kind == "failed"


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().up()
    yield r
    r.down()


def target(receiver: Receiver, path: str):  # type: ignore[no-untyped-def]
    return check(receiver.url(path), policy_of(SETTINGS))


def test_send_posts_the_body_with_the_headers(receiver: Receiver) -> None:
    receiver.answer("/a", Answer(201, body=b"x" * 500))
    result = send_http(target(receiver, "/a"), {"webhook-id": "msg_1"}, b'{"a":1}', SETTINGS)
    assert result.status_code == 201 and result.response_body == "x" * 50  # truncated to max_response_chars
    [request] = receiver.received("/a")
    assert request.body == b'{"a":1}' and request.headers["webhook-id"] == "msg_1"
    assert request.headers["content-type"] == "application/json"


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.answer("/r", Answer(302, {"location": receiver.url("/elsewhere")}))
    result = send_http(target(receiver, "/r"), {}, b"{}", SETTINGS)
    assert result.status_code == 302 and receiver.received("/elsewhere") == []
    assert decide(result, 1, SETTINGS, RNG).kind == "failed"


def test_a_slow_receiver_times_out(receiver: Receiver) -> None:
    receiver.answer("/slow", Answer(200, delay_seconds=2))
    result = send_http(target(receiver, "/slow"), {}, b"{}", SETTINGS)
    assert result.status_code is None and "timeout" in (result.error or "") and result.retryable


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    result = send_http(check(f"http://127.0.0.1:{port}/", policy_of(SETTINGS)), {}, b"{}", SETTINGS)
    assert result.status_code is None and "connection failed" in (result.error or "")
    assert decide(result, 1, SETTINGS, RNG).kind == "retry"


def test_retry_after_header_is_read(receiver: Receiver) -> None:
    receiver.answer("/busy", Answer(429, {"retry-after": "7"}))
    result = send_http(target(receiver, "/busy"), {}, b"{}", SETTINGS)
    assert result.status_code == 429 and result.retry_after_seconds == 7


# Each byte comes well within the 0.5 s timeout; the whole answer (4 s and more of pauses) does not. Timed
# per phase (connect, each read), as httpx does, such an answer would count as a 200.
TRICKLING = {
    "whole answer": Answer(200, body=b"x" * 40, trickle_seconds=0.1),
    "body only": Answer(200, body=b"x" * 40, trickle_seconds=0.1, trickle_body_only=True),
}


@pytest.mark.parametrize("answer", TRICKLING.values(), ids=TRICKLING.keys())
def test_an_answer_trickling_past_the_timeout_is_a_timeout(receiver: Receiver, answer: Answer) -> None:
    receiver.answer("/trickle", answer)
    result = send_http(target(receiver, "/trickle"), {}, b"{}", SETTINGS)
    assert result.status_code is None and "timeout after 0.5s" in (result.error or "") and result.retryable
    assert len(receiver.received("/trickle")) == 1


def test_a_quick_answer_after_a_trickled_one_succeeds(receiver: Receiver) -> None:
    """The control: the same receiver, the same budget, an answer sent at once is a success."""
    receiver.answer("/trickle", TRICKLING["body only"], Answer(200, body=b"x" * 40))
    assert send_http(target(receiver, "/trickle"), {}, b"{}", SETTINGS).status_code is None
    quick = send_http(target(receiver, "/trickle"), {}, b"{}", SETTINGS)
    assert quick.status_code == 200 and quick.response_body == "x" * 40


def test_a_trickled_answer_is_recorded_as_a_timeout_and_retried(receiver: Receiver, sql_engine: sa.Engine) -> None:
    store = WebhookStore(sql_engine)
    hook = store.create("p1", "h", receiver.url("/trickle"), ["memory_add"])
    now = datetime.now(UTC)
    events = [MemoryEvent(id="m1", memory="Lives in Lisbon", event="ADD")]
    with sql_engine.begin() as conn:
        [(delivery_id, token)] = outbox.write(
            conn, "p1", "job-1", outbox.memory_events(events, job_id="job-1", project_id="p1", scope={}, at=now), now
        )
    receiver.answer("/trickle", TRICKLING["whole answer"])
    step = deliver(store, SETTINGS, delivery_id, token, rng=RNG)  # the real sender and resolver
    [attempt] = store.attempts(delivery_id)
    assert (attempt["outcome"], attempt["status_code"], attempt["response_body"]) == ("retry", None, None)
    assert attempt["error"].startswith("timeout after 0.5s")
    delivery = store.delivery(delivery_id)
    assert delivery is not None and (delivery.status, delivery.attempts) == (PENDING, 1)
    assert step.expected_attempts == 1 and step.wait_seconds is not None  # retried on the schedule
    [request] = receiver.received("/trickle")
    assert request.headers["webhook-id"] == delivery_id and delivery.webhook_id == hook.id


def test_proxy_settings_in_the_environment_are_not_used(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would connect by name again and undo the address check: the checked address is reached directly."""
    proxy = Receiver().up()
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url(""))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        result = send_http(target(receiver, "/direct"), {}, b"{}", SETTINGS)
    finally:
        proxy.down()
    assert result.status_code == 200 and len(receiver.received("/direct")) == 1
    assert proxy.requests == []
