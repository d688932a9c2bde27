"""``WebhookStore``: webhooks, their deliveries and every attempt, in SQL (tables in ``engram.sql.tables``).

A delivery's ``attempts`` counts every try it ever had and doubles as a claim token: a task sends
only after moving it from the value it was scheduled with to the next one, in one conditional
UPDATE, so duplicate messages (at-least-once broker, sweeper, replays) never send the same attempt twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, insert, or_, select, update

from engram.sql import tables
from engram.sql.jobs import _aware, utcnow
from engram.webhooks import signing

PENDING, SUCCEEDED, FAILED = "PENDING", "SUCCEEDED", "FAILED"
DELIVERY_STATUSES = (PENDING, SUCCEEDED, FAILED)
# Celery runs an ETA task when it is due by the worker's clock; allow for a little skew against SQL's.
DUE_TOLERANCE = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    project_id: str
    name: str
    url: str
    event_types: list[str]
    is_active: bool
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime

    def signing_secrets(self, now: datetime) -> list[str]:
        """The current secret, and the rotated-out one while its grace period lasts."""
        keep_old = (
            self.previous_secret is not None
            and self.previous_secret_expires_at is not None
            and self.previous_secret_expires_at > now
        )
        return [self.secret, self.previous_secret] if keep_old else [self.secret]  # type: ignore[list-item]


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    webhook_id: str
    project_id: str
    job_id: str | None
    event_type: str
    body: str
    status: str
    attempts: int
    round_start: int
    next_attempt_at: datetime | None
    claimed_until: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None

    @property
    def round_attempts(self) -> int:
        """Attempts since the delivery was first sent or last replayed: the retry schedule's index."""
        return self.attempts - self.round_start


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One try, as it is logged (what the receiver answered, or why nothing was sent)."""

    attempt: int
    outcome: str  # succeeded | retry | failed | disabled
    status_code: int | None
    error: str | None
    duration_ms: int
    response_body: str | None
    next_attempt_at: datetime | None


TIME_FIELDS = ("previous_secret_expires_at", "created_at", "updated_at", "next_attempt_at", "claimed_until",
               "delivered_at")


def _row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    for name in TIME_FIELDS:
        if name in row:
            row[name] = _aware(row[name])
    return row


def new_webhook_id() -> str:
    return "wh_" + uuid.uuid4().hex[:24]


class WebhookStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- webhooks -------------------------------------------------------------------------
    def create(self, project_id: str, name: str, url: str, event_types: list[str]) -> Webhook:
        now = utcnow()
        values: dict[str, Any] = {
            "id": new_webhook_id(), "project_id": project_id, "name": name, "url": url,
            "event_types": event_types, "is_active": True, "secret": signing.new_secret(),
            "previous_secret": None, "previous_secret_expires_at": None, "disabled_reason": None,
            "created_at": now, "updated_at": now,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(tables.webhooks).values(**values))
        return Webhook(**values)

    def for_project(self, project_id: str) -> list[Webhook]:
        w = tables.webhooks
        with self.engine.connect() as conn:
            rows = conn.execute(select(w).where(w.c.project_id == project_id).order_by(w.c.created_at, w.c.id))
            return [Webhook(**_row(r)) for r in rows.mappings()]

    def get(self, webhook_id: str, project_id: str | None = None) -> Webhook | None:
        w = tables.webhooks
        query = select(w).where(w.c.id == webhook_id)
        if project_id is not None:
            query = query.where(w.c.project_id == project_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return Webhook(**_row(row)) if row is not None else None

    def update(self, webhook_id: str, project_id: str, **changes: Any) -> Webhook | None:
        """Change name, url, event_types or is_active; re-enabling clears the reason it was disabled."""
        allowed = {k: v for k, v in changes.items() if k in ("name", "url", "event_types", "is_active")}
        if allowed.get("is_active"):
            allowed["disabled_reason"] = None
        w = tables.webhooks
        with self.engine.begin() as conn:
            conn.execute(
                update(w).where(w.c.id == webhook_id, w.c.project_id == project_id).values(
                    **allowed, updated_at=utcnow()
                )
            )
        return self.get(webhook_id, project_id)

    def rotate_secret(self, webhook_id: str, project_id: str, grace_seconds: float) -> Webhook | None:
        """A new secret; the old one keeps signing (as a second signature) for ``grace_seconds``."""
        current = self.get(webhook_id, project_id)
        if current is None:
            return None
        now = utcnow()
        w = tables.webhooks
        with self.engine.begin() as conn:
            conn.execute(
                update(w).where(w.c.id == webhook_id, w.c.secret == current.secret).values(
                    secret=signing.new_secret(),
                    previous_secret=current.secret if grace_seconds > 0 else None,
                    previous_secret_expires_at=now + timedelta(seconds=grace_seconds) if grace_seconds > 0 else None,
                    updated_at=now,
                )
            )
        return self.get(webhook_id, project_id)

    def delete(self, webhook_id: str, project_id: str) -> bool:
        """The webhook, its deliveries and their attempts; queued sends then find nothing and stop."""
        w, d, a = tables.webhooks, tables.webhook_deliveries, tables.webhook_attempts
        with self.engine.begin() as conn:
            gone = conn.execute(delete(w).where(w.c.id == webhook_id, w.c.project_id == project_id)).rowcount
            if gone:
                conn.execute(delete(a).where(a.c.webhook_id == webhook_id))
                conn.execute(delete(d).where(d.c.webhook_id == webhook_id))
        return bool(gone)

    # -- deliveries -----------------------------------------------------------------------
    def delivery(self, delivery_id: str, webhook_id: str | None = None) -> Delivery | None:
        d = tables.webhook_deliveries
        query = select(d).where(d.c.id == delivery_id)
        if webhook_id is not None:
            query = query.where(d.c.webhook_id == webhook_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return Delivery(**_row(row)) if row is not None else None

    def deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[Delivery]]:
        """Newest first, with the total count for paging."""
        d = tables.webhook_deliveries
        where = [d.c.webhook_id == webhook_id] + ([d.c.status == status] if status else [])
        with self.engine.connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(d).where(*where)).scalar_one())
            rows = conn.execute(
                select(d).where(*where).order_by(d.c.created_at.desc(), d.c.id).limit(limit).offset(offset)
            ).mappings()
            return total, [Delivery(**_row(r)) for r in rows]

    def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        a = tables.webhook_attempts
        with self.engine.connect() as conn:
            rows = conn.execute(select(a).where(a.c.delivery_id == delivery_id).order_by(a.c.attempt)).mappings()
            return [_row(r) for r in rows]

    def claim(self, delivery_id: str, expected_attempts: int, now: datetime, lease_seconds: float) -> Delivery | None:
        """Take the next attempt of a due PENDING delivery, or None when it is not this caller's to take."""
        d = tables.webhook_deliveries
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(d)
                .where(
                    d.c.id == delivery_id,
                    d.c.status == PENDING,
                    d.c.attempts == expected_attempts,
                    or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= now + DUE_TOLERANCE),
                    or_(d.c.claimed_until.is_(None), d.c.claimed_until < now),
                )
                .values(
                    attempts=d.c.attempts + 1,
                    claimed_until=now + timedelta(seconds=lease_seconds),
                    updated_at=now,
                )
            ).rowcount
        return self.delivery(delivery_id) if taken else None

    def finish_attempt(
        self, delivery: Delivery, record: AttemptRecord, *, status: str, disable_reason: str | None = None
    ) -> None:
        """Log the attempt and move the delivery on, in one commit (and disable the webhook on 410)."""
        now = utcnow()
        d, a, w = tables.webhook_deliveries, tables.webhook_attempts, tables.webhooks
        with self.engine.begin() as conn:
            conn.execute(
                insert(a).values(
                    id=str(uuid.uuid4()), delivery_id=delivery.id, webhook_id=delivery.webhook_id,
                    attempt=record.attempt, outcome=record.outcome, status_code=record.status_code,
                    error=record.error, duration_ms=record.duration_ms, response_body=record.response_body,
                    next_attempt_at=record.next_attempt_at, created_at=now,
                )
            )
            conn.execute(
                update(d)
                .where(d.c.id == delivery.id, d.c.attempts == delivery.attempts)
                .values(
                    status=status, next_attempt_at=record.next_attempt_at, claimed_until=None,
                    last_status_code=record.status_code, last_error=record.error, updated_at=now,
                    delivered_at=now if status == SUCCEEDED else None,
                )
            )
            if disable_reason is not None:
                conn.execute(
                    update(w).where(w.c.id == delivery.webhook_id).values(
                        is_active=False, disabled_reason=disable_reason, updated_at=now
                    )
                )

    def replay(self, delivery_ids: list[str]) -> list[tuple[str, int]]:
        """Send these deliveries again now. A settled one starts the schedule afresh; it keeps its id (the
        ``webhook-id`` a receiver dedupes by) and its attempt log. Returns (id, claim token) to enqueue."""
        if not delivery_ids:
            return []
        now = utcnow()
        d = tables.webhook_deliveries
        with self.engine.begin() as conn:
            # A pending delivery waiting for its next retry is sent now, its schedule carrying on.
            conn.execute(
                update(d)
                .where(d.c.id.in_(delivery_ids), d.c.status == PENDING, d.c.claimed_until.is_(None))
                .values(next_attempt_at=now, updated_at=now)
            )
            conn.execute(
                update(d)
                .where(d.c.id.in_(delivery_ids), d.c.status != PENDING)
                .values(status=PENDING, round_start=d.c.attempts, next_attempt_at=now, claimed_until=None,
                        updated_at=now)
            )
            rows = conn.execute(
                select(d.c.id, d.c.attempts).where(d.c.id.in_(delivery_ids), d.c.status == PENDING)
            )
            return [(r.id, r.attempts) for r in rows]

    def failed_ids(self, webhook_id: str) -> list[str]:
        d = tables.webhook_deliveries
        with self.engine.connect() as conn:
            query = select(d.c.id).where(d.c.webhook_id == webhook_id, d.c.status == FAILED).order_by(d.c.created_at)
            return [r.id for r in conn.execute(query)]

    def overdue(self, now: datetime, grace_seconds: float, limit: int = 1000) -> list[tuple[str, int]]:
        """PENDING deliveries due more than ``grace_seconds`` ago and not being sent: their message was
        lost (a crash between commit and enqueue, a purged queue). The sweeper sends them again."""
        d = tables.webhook_deliveries
        cutoff = now - timedelta(seconds=grace_seconds)
        query = (
            select(d.c.id, d.c.attempts)
            .where(
                d.c.status == PENDING,
                or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= cutoff),
                or_(d.c.claimed_until.is_(None), d.c.claimed_until < now),
            )
            .order_by(d.c.next_attempt_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(r.id, r.attempts) for r in conn.execute(query)]
