"""Send one delivery, log the attempt, decide what happens next.

The decision table (``decide``) is a pure function, after saleor's transport and the Standard
Webhooks guidance: 2xx succeeds; 410 Gone disables the webhook; 408, 429, 5xx and network errors are
retried on the schedule (a ``Retry-After`` is honoured); any other answer (3xx included: redirects
are not followed) fails at once. After the schedule's last retry the delivery is FAILED; it can be
replayed.
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpcore
import httpx

from config.settings import WebhookSettings
from engram.webhooks import signing
from engram.webhooks.store import FAILED, PENDING, SUCCEEDED, AttemptRecord, Delivery, Webhook, WebhookStore
from engram.webhooks.targets import (
    Resolver,
    Target,
    TargetPolicy,
    TargetRefused,
    TargetUnresolvable,
    check,
    pinned,
    system_resolver,
)

log = logging.getLogger(__name__)
USER_AGENT = "engram-webhooks/0.1"
RETRYABLE_STATUS_CODES = (408, 429)
# How long a claimed attempt is protected from a second sender: well above one send's worst case.
LEASE_EXTRA_SECONDS = 30.0
# A request is written in pieces this big, each within what is left of the attempt's time budget.
WRITE_SLICE_BYTES = 64 * 1024

OutcomeKind = Literal["succeeded", "retry", "failed", "disabled"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one HTTP attempt came to: a status code, or an error (and whether it is worth retrying)."""

    status_code: int | None = None
    response_body: str | None = None
    retry_after_seconds: float | None = None
    error: str | None = None
    retryable: bool = True
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    delay_seconds: float | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Next:
    """What the task does after ``deliver``: nothing, or run again in ``wait_seconds`` with the claim token."""

    wait_seconds: float | None = None
    expected_attempts: int | None = None


Sender = Callable[[Target, dict[str, str], bytes, WebhookSettings], SendResult]


def decide(result: SendResult, attempts_in_round: int, settings: WebhookSettings, rng: random.Random) -> Outcome:
    """The retry decision for an attempt; ``attempts_in_round`` counts it (1 for the first send)."""
    code = result.status_code
    if code is not None and 200 <= code < 300:
        return Outcome("succeeded")
    if code == 410:
        return Outcome("disabled", reason="the receiver answered 410 Gone; webhook disabled")
    retryable = code in RETRYABLE_STATUS_CODES or (code is not None and code >= 500)
    if code is None:
        retryable = result.retryable
    if not retryable:
        return Outcome("failed", reason=f"HTTP {code} is not retried" if code is not None else result.error)
    schedule = settings.retry_schedule_seconds
    if attempts_in_round > len(schedule):
        return Outcome("failed", reason=f"gave up after {attempts_in_round} attempts")
    if result.retry_after_seconds is not None:
        delay = min(max(result.retry_after_seconds, 0.0), settings.max_retry_after_seconds)
    else:
        delay = schedule[attempts_in_round - 1] * rng.uniform(1 - settings.jitter, 1 + settings.jitter)
    return Outcome("retry", delay_seconds=delay)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from ``Retry-After``: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _budget(deadline: float, timeout: float | None, expired: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the attempt's time budget is spent")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most what is left of the attempt's budget."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self.stream = stream
        self.deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, _budget(self.deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # In slices: one write loops over partial sends, and each of those may wait its whole timeout.
        for start in range(0, len(buffer), WRITE_SLICE_BYTES):
            piece = buffer[start:start + WRITE_SLICE_BYTES]
            self.stream.write(piece, _budget(self.deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        budget = _budget(self.deadline, timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self.stream.start_tls(ssl_context, server_hostname, budget), self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, all under one deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.backend = httpcore.SyncBackend()

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        budget = _budget(self.deadline, timeout, httpcore.ConnectTimeout)
        connected = self.backend.connect_tcp(host, port, budget, local_address, socket_options)
        return _DeadlineStream(connected, self.deadline)

    def sleep(self, seconds: float) -> None:
        self.backend.sleep(seconds)


def send_http(target: Target, headers: dict[str, str], body: bytes, settings: WebhookSettings) -> SendResult:
    """POST ``body`` to the checked address; the whole exchange within ``timeout_seconds``.

    httpx and httpcore time each phase (connect, every write, every read) on its own, so a receiver that
    trickles its answer could hold an attempt for many times the setting and still count as a success.
    Here every socket operation waits at most what is left of one budget: connect, request, status line,
    headers and the part of the body that is read must all arrive in time, or the attempt is a timeout.
    httpcore, the transport under httpx, is used directly: it follows no redirects and reads no proxy
    settings (an HTTP(S)_PROXY would reconnect by name and undo the address check).
    """
    url, host_headers, extensions = pinned(target)
    started = time.monotonic()
    timeout = settings.timeout_seconds
    limit = settings.max_response_chars
    sent = {**headers, **host_headers, "content-type": "application/json", "user-agent": USER_AGENT}
    request_url = httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)
    phases = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    try:
        with httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_DeadlineBackend(started + timeout),
            max_connections=1,
        ) as pool, pool.stream(
            "POST", request_url, headers=list(sent.items()), content=body,
            extensions={**extensions, "timeout": phases},
        ) as response:
            raw = b""
            try:
                for chunk in response.iter_stream():
                    raw += chunk
                    if len(raw) >= limit * 4:
                        break  # enough to log; the status code already decided
            except (httpcore.NetworkError, httpcore.ProtocolError):
                pass  # the status line arrived and decides; a body cut short is only logged shorter
            # (a timeout is not caught here: an answer still trickling in when the budget ran out is one)
            answer = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
            return SendResult(
                status_code=response.status,
                response_body=raw.decode("utf-8", errors="replace")[:limit],
                retry_after_seconds=parse_retry_after(answer.get("retry-after"), datetime.now(UTC)),
                duration_ms=int((time.monotonic() - started) * 1000),
            )
    except httpcore.TimeoutException as exc:
        error = f"timeout after {timeout:g}s ({type(exc).__name__})"
    except httpcore.ConnectError as exc:
        error = f"connection failed: {exc!s:.200}"
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        error = f"{type(exc).__name__}: {exc!s:.200}"
    return SendResult(error=error, retryable=True, duration_ms=int((time.monotonic() - started) * 1000))


def policy_of(settings: WebhookSettings) -> TargetPolicy:
    return TargetPolicy.of(settings.allow_private_targets, settings.allowed_networks)


def attempt(
    webhook: Webhook, delivery: Delivery, settings: WebhookSettings, now: datetime, *, send: Sender, resolve: Resolver
) -> SendResult:
    """Check the target again (DNS may have changed since the webhook was saved), sign, send."""
    try:
        target = check(webhook.url, policy_of(settings), resolve)
    except TargetUnresolvable as exc:
        return SendResult(error=str(exc), retryable=True)
    except TargetRefused as exc:
        return SendResult(error=f"target refused: {exc}", retryable=False)
    body = delivery.body.encode()
    headers = signing.headers(webhook.signing_secrets(now), delivery.id, int(now.timestamp()), body)
    return send(target, headers, body, settings)


def deliver(
    store: WebhookStore,
    settings: WebhookSettings,
    delivery_id: str,
    expected_attempts: int | None = None,
    *,
    send: Sender = send_http,
    resolve: Resolver = system_resolver,
    rng: random.Random | None = None,
) -> Next:
    """Make the delivery's next attempt if it is due and this call holds its claim token."""
    now = datetime.now(UTC)
    current = store.delivery(delivery_id)
    if current is None or current.status != PENDING:
        return Next()  # deleted with its webhook, or already settled
    token = current.attempts if expected_attempts is None else expected_attempts
    if current.attempts != token:
        return Next()  # a stale duplicate: another message carries the current token
    if current.next_attempt_at is not None and current.next_attempt_at > now + timedelta(seconds=1):
        return Next((current.next_attempt_at - now).total_seconds(), token)
    lease = settings.timeout_seconds * 3 + LEASE_EXTRA_SECONDS
    claimed = store.claim(delivery_id, token, now, lease)
    if claimed is None:
        return Next()  # another worker is sending this attempt
    webhook = store.get(claimed.webhook_id)
    if webhook is None:
        return Next()
    if not webhook.is_active:
        result = SendResult(error="webhook is disabled; not sent", retryable=False)
    else:
        result = attempt(webhook, claimed, settings, now, send=send, resolve=resolve)
    outcome = decide(result, claimed.round_attempts, settings, rng or random.Random())
    return _record(store, webhook, claimed, result, outcome)


def _record(store: WebhookStore, webhook: Webhook, delivery: Delivery, result: SendResult, outcome: Outcome) -> Next:
    next_at = (
        datetime.now(UTC) + timedelta(seconds=outcome.delay_seconds) if outcome.delay_seconds is not None else None
    )
    error = result.error or outcome.reason
    record = AttemptRecord(
        attempt=delivery.attempts, outcome=outcome.kind, status_code=result.status_code, error=error,
        duration_ms=result.duration_ms, response_body=result.response_body, next_attempt_at=next_at,
    )
    status = {"succeeded": SUCCEEDED, "retry": PENDING}.get(outcome.kind, FAILED)
    store.finish_attempt(
        delivery, record, status=status, disable_reason=outcome.reason if outcome.kind == "disabled" else None
    )
    # The host only: a URL's path or query may carry a receiver's token.
    host = httpx.URL(webhook.url).host
    log.info(
        "webhook %s delivery %s (%s) attempt %d to %s: %s%s",
        webhook.id, delivery.id, delivery.event_type, delivery.attempts, host,
        result.status_code if result.status_code is not None else result.error, f" → {outcome.kind}",
    )
    if outcome.kind == "retry" and outcome.delay_seconds is not None:
        return Next(outcome.delay_seconds, delivery.attempts)
    return Next()
