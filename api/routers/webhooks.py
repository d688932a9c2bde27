"""Webhooks (Mem0's routes, as mem0ai's client calls them), their deliveries, attempts and replays.

The ``{project_id}`` in Mem0's paths must be the caller's own project; a webhook of another project
is answered 404, like any id the caller's project does not have.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from celery import Celery
from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.deps import ContainerDep, ProjectDep, SenderDep
from config.container import Container
from engram.errors import NotFoundError
from engram.ingest import BROKER_ERRORS, BrokerUnavailable
from engram.webhooks import DELIVER_TASK, signing
from engram.webhooks.deliver import policy_of
from engram.webhooks.outbox import Queued
from engram.webhooks.store import Delivery, Webhook
from engram.webhooks.targets import TargetRefused, check
from schemas.webhooks import (
    AttemptPublic,
    DeliveryList,
    DeliveryPublic,
    DeliveryStatus,
    ReplayAccepted,
    SecretRotation,
    WebhookChanged,
    WebhookCreate,
    WebhookDeleted,
    WebhookPublic,
    WebhookUpdate,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
ERRORS: dict[int | str, dict[str, Any]] = {400: {}, 401: {}, 404: {}, 409: {}, 503: {}}


def to_public(webhook: Webhook, *, reveal: bool = False) -> dict[str, Any]:
    return {
        "webhook_id": webhook.id, "name": webhook.name, "url": webhook.url, "event_types": webhook.event_types,
        "is_active": webhook.is_active, "project": webhook.project_id, "disabled_reason": webhook.disabled_reason,
        "secret": webhook.secret if reveal else None, "secret_hint": signing.mask(webhook.secret),
        "previous_secret_expires_at": webhook.previous_secret_expires_at if webhook.previous_secret else None,
        "created_at": webhook.created_at, "updated_at": webhook.updated_at,
    }


def delivery_public(d: Delivery) -> DeliveryPublic:
    return DeliveryPublic(
        delivery_id=d.id, webhook_id=d.webhook_id, event_type=d.event_type, event_id=d.job_id, status=d.status,  # type: ignore[arg-type]
        attempts=d.attempts, next_attempt_at=d.next_attempt_at if d.status == "PENDING" else None,
        last_status_code=d.last_status_code, last_error=d.last_error, payload=json.loads(d.body),
        created_at=d.created_at, updated_at=d.updated_at, delivered_at=d.delivered_at,
    )


# Ownership is checked in dependencies: they run before the body is validated, so another project
# gets 404 whatever it sends, never a 422 that tells it anything about the route.
def own_project(project_id: str, caller: ProjectDep) -> str:
    if project_id != caller:
        raise NotFoundError(f"project {project_id} not found")
    return caller


def own_webhook(webhook_id: str, c: ContainerDep, caller: ProjectDep) -> Webhook:
    webhook = c.webhooks.get(webhook_id, caller)
    if webhook is None:
        raise NotFoundError(f"webhook {webhook_id} not found")
    return webhook


OwnProject = Annotated[str, Depends(own_project)]
OwnWebhook = Annotated[Webhook, Depends(own_webhook)]


def checked_url(c: Container, url: str) -> str:
    """Refuse a target the SSRF guard refuses (private, loopback, link-local... unless settings allow)."""
    try:
        check(url, policy_of(c.settings.webhooks))
    except TargetRefused as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    return url


def enqueue(sender: Celery, queued: list[Queued]) -> None:
    try:
        for delivery_id, token in queued:
            sender.send_task(DELIVER_TASK, args=[delivery_id], kwargs={"expected_attempts": token})
    except BROKER_ERRORS as exc:
        # The deliveries are PENDING in SQL: a retry of this request (or the sweeper) sends them.
        raise BrokerUnavailable("the webhook queue is unavailable; retry shortly") from exc


@router.get("/projects/{project_id}/", response_model=list[WebhookPublic], responses=ERRORS)
def list_webhooks(c: ContainerDep, caller: OwnProject) -> list[dict[str, Any]]:
    """The project's webhooks (secrets masked)."""
    return [to_public(w) for w in c.webhooks.for_project(caller)]


@router.post(
    "/projects/{project_id}/", response_model=WebhookPublic, status_code=status.HTTP_201_CREATED, responses=ERRORS
)
def create_webhook(body: WebhookCreate, c: ContainerDep, caller: OwnProject) -> dict[str, Any]:
    """A new webhook with its own signing secret, shown in this answer only."""
    webhook = c.webhooks.create(caller, body.name, checked_url(c, body.url), body.event_types)
    return to_public(webhook, reveal=True)


@router.get("/{webhook_id}/", response_model=WebhookPublic, responses=ERRORS)
def get_webhook(webhook: OwnWebhook) -> dict[str, Any]:
    return to_public(webhook)


@router.put("/{webhook_id}/", response_model=WebhookChanged, responses=ERRORS)
def update_webhook(webhook: OwnWebhook, body: WebhookUpdate, c: ContainerDep) -> dict[str, Any]:
    """Change name, url, event_types or is_active (``true`` re-enables a webhook a 410 disabled)."""
    changes = body.model_dump(exclude_none=True)
    if "url" in changes:
        checked_url(c, changes["url"])
    updated = c.webhooks.update(webhook.id, webhook.project_id, **changes)
    if updated is None:
        raise NotFoundError(f"webhook {webhook.id} not found")
    return {**to_public(updated), "message": "Webhook updated successfully"}


@router.delete("/{webhook_id}/", response_model=WebhookDeleted, responses=ERRORS)
def delete_webhook(webhook: OwnWebhook, c: ContainerDep) -> dict[str, Any]:
    """The webhook with its deliveries and their log."""
    if not c.webhooks.delete(webhook.id, webhook.project_id):
        raise NotFoundError(f"webhook {webhook.id} not found")
    return {"message": "Webhook deleted successfully"}


@router.post("/{webhook_id}/rotate-secret/", response_model=WebhookChanged, responses=ERRORS)
def rotate_secret(webhook: OwnWebhook, c: ContainerDep, body: SecretRotation | None = None) -> dict[str, Any]:
    """A new secret, shown once; the old one keeps signing (a second signature) for the grace period."""
    grace = body.grace_seconds if body is not None and body.grace_seconds is not None else None
    rotated = c.webhooks.rotate_secret(
        webhook.id, webhook.project_id, c.settings.webhooks.secret_grace_seconds if grace is None else grace
    )
    if rotated is None:
        raise NotFoundError(f"webhook {webhook.id} not found")
    return {**to_public(rotated, reveal=True), "message": "Secret rotated"}


@router.get("/{webhook_id}/deliveries/", response_model=DeliveryList, responses=ERRORS)
def list_deliveries(
    webhook: OwnWebhook,
    c: ContainerDep,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> DeliveryList:
    """Newest first; ``status`` narrows to PENDING, SUCCEEDED or FAILED."""
    total, rows = c.webhooks.deliveries(webhook.id, status=status_, limit=limit, offset=offset)
    return DeliveryList(count=total, results=[delivery_public(d) for d in rows])


@router.get("/{webhook_id}/deliveries/{delivery_id}/attempts/", response_model=list[AttemptPublic], responses=ERRORS)
def list_attempts(webhook: OwnWebhook, delivery_id: str, c: ContainerDep) -> list[dict[str, Any]]:
    """Every attempt of one delivery: status code, duration, the receiver's answer (truncated) or the error."""
    if c.webhooks.delivery(delivery_id, webhook.id) is None:
        raise NotFoundError(f"delivery {delivery_id} not found")
    return c.webhooks.attempts(delivery_id)


def replay(c: Container, sender: Celery, webhook: Webhook, delivery_ids: list[str]) -> ReplayAccepted:
    if not webhook.is_active:
        raise HTTPException(status.HTTP_409_CONFLICT, "the webhook is disabled; re-enable it (PUT is_active=true)")
    queued = c.webhooks.replay(delivery_ids)
    enqueue(sender, queued)
    return ReplayAccepted(message=f"{len(queued)} deliveries queued", delivery_ids=[i for i, _ in queued])


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/replay/",
    response_model=ReplayAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=ERRORS,
)
def replay_delivery(webhook: OwnWebhook, delivery_id: str, c: ContainerDep, sender: SenderDep) -> ReplayAccepted:
    """Send one delivery again now, with the same ``webhook-id`` (receivers dedupe by it)."""
    if c.webhooks.delivery(delivery_id, webhook.id) is None:
        raise NotFoundError(f"delivery {delivery_id} not found")
    return replay(c, sender, webhook, [delivery_id])


@router.post(
    "/{webhook_id}/replay-failed/", response_model=ReplayAccepted, status_code=status.HTTP_202_ACCEPTED,
    responses=ERRORS,
)
def replay_failed(webhook: OwnWebhook, c: ContainerDep, sender: SenderDep) -> ReplayAccepted:
    """Send every FAILED delivery of the webhook again."""
    return replay(c, sender, webhook, c.webhooks.failed_ids(webhook.id))
