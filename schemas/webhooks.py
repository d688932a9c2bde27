"""Webhook wire models, Mem0-compatible (``webhook_id``, ``name``, ``url``, ``event_types``, ``is_active``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engram.webhooks.payload import EVENT_TYPES

DEFAULT_EVENT_TYPES = ["memory_add", "memory_update", "memory_delete"]
DeliveryStatus = Literal["PENDING", "SUCCEEDED", "FAILED"]
MAX_GRACE_SECONDS = 30 * 86_400


def _event_types(value: list[str] | None) -> list[str] | None:
    """Mem0's docs spell them ``memory_add`` and ``memory:add``; both mean the same, stored as ``memory_add``."""
    if value is None:
        return None
    normalised = list(dict.fromkeys(str(v).strip().replace(":", "_") for v in value))
    unknown = [v for v in normalised if v not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event types {unknown}; choose from {list(EVENT_TYPES)}")
    if not normalised:
        raise ValueError("give at least one event type")
    return normalised


class WebhookCreate(BaseModel):
    """Body of ``POST api/v1/webhooks/projects/{project_id}/``."""

    model_config = ConfigDict(extra="ignore")

    url: str = Field(min_length=1, max_length=2000, description="http(s) URL that receives the POSTs")
    name: str = Field("webhook", min_length=1, max_length=200)
    event_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EVENT_TYPES), max_length=len(EVENT_TYPES) * 2,
        description=f"Any of {list(EVENT_TYPES)} (``memory:add`` spelling accepted)",
    )

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        return _event_types(value) or []


class WebhookUpdate(BaseModel):
    """Body of ``PUT api/v1/webhooks/{webhook_id}/``: the fields given change, the others stay."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, min_length=1, max_length=200)
    url: str | None = Field(None, min_length=1, max_length=2000)
    event_types: list[str] | None = Field(None, max_length=len(EVENT_TYPES) * 2)
    is_active: bool | None = Field(None, description="false pauses deliveries; true re-enables a disabled webhook")

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str] | None) -> list[str] | None:
        return _event_types(value)


class SecretRotation(BaseModel):
    """Body of ``POST api/v1/webhooks/{webhook_id}/rotate-secret/`` (optional)."""

    grace_seconds: float | None = Field(
        None, ge=0, le=MAX_GRACE_SECONDS, description="How long the old secret still signs (default: settings)"
    )


class WebhookPublic(BaseModel):
    """A webhook as the API shows it. ``secret`` is present only right after creation or rotation."""

    webhook_id: str
    name: str
    url: str
    event_types: list[str]
    is_active: bool
    project: str
    disabled_reason: str | None = None
    secret: str | None = Field(None, description="The signing secret (whsec_…); shown once")
    secret_hint: str = Field(description="The secret's last characters, to tell secrets apart")
    previous_secret_expires_at: datetime | None = Field(None, description="Until then the old secret signs too")
    created_at: datetime
    updated_at: datetime


class WebhookChanged(WebhookPublic):
    message: str


class WebhookDeleted(BaseModel):
    message: str


class AttemptPublic(BaseModel):
    """One try of a delivery, as it was logged."""

    attempt: int
    outcome: Literal["succeeded", "retry", "failed", "disabled"]
    status_code: int | None = None
    error: str | None = None
    duration_ms: int
    response_body: str | None = Field(None, description="The receiver's answer, truncated")
    next_attempt_at: datetime | None = None
    created_at: datetime


class DeliveryPublic(BaseModel):
    """One event for one webhook: the body sent (identical on every attempt) and where it stands."""

    delivery_id: str = Field(description="Also the webhook-id header the receiver sees (stable across retries)")
    webhook_id: str
    event_type: str
    event_id: str | None = Field(None, description="The job that produced the event")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None


class DeliveryList(BaseModel):
    count: int
    results: list[DeliveryPublic]


class ReplayAccepted(BaseModel):
    message: str
    delivery_ids: list[str]
