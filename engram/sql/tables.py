"""Table definitions. Alembic migrations in ``engram/migrations`` create and evolve them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False, default="add"),
    Column("status", String(16), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("request", JSON, nullable=False),
    Column("user_id", String(256), nullable=False, default=""),
    Column("agent_id", String(256), nullable=False, default=""),
    Column("run_id", String(256), nullable=False, default=""),
    # Stage outputs: each is also that stage's "done" marker for redelivered messages.
    Column("facts", JSON),
    Column("embeddings", LargeBinary),
    Column("plan", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    # Batch ingest and client idempotency keys (migration 0005).
    Column("batch_id", String(36)),
    Column("batch_index", Integer),
    Column("idempotency_key", String(200)),
    Index("ix_jobs_project_status", "project_id", "status"),
    Index("ix_jobs_status_updated", "status", "updated_at"),
)

memory_events = Table(
    "memory_events",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("memory_id", String(36), nullable=False),
    Column("event", String(8), nullable=False),
    Column("memory", Text, nullable=False),
    Column("previous_memory", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_memory_events_memory", "memory_id"),
)

memory_history = Table(
    "memory_history",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("memory_id", String(36), nullable=False),
    Column("old_memory", Text),
    Column("new_memory", Text),
    Column("event", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True)),
    Column("is_deleted", Boolean, nullable=False, default=False),
    Column("actor_id", String(256)),
    Column("role", String(32)),
    Column("job_id", String(36)),
    Index("ix_memory_history_memory", "project_id", "memory_id", "created_at"),
)

organizations = Table(
    "organizations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("org_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("custom_instructions", Text),
    Column("custom_categories", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Mem0's custom prompts, per project (migration 0006); each replaces the settings-level one.
    Column("custom_fact_extraction_prompt", Text),
    Column("custom_update_memory_prompt", Text),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("memory_id", String(64), nullable=False),
    Column("feedback", String(32)),
    Column("feedback_reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

exports = Table(
    "exports",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("request", JSON, nullable=False),
    Column("result", JSON),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("total", Integer, nullable=False),
    Column("rejected", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Webhooks (migration 0004, DESIGN.md #9): endpoints, one delivery per (endpoint, event), one attempt per try.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("event_types", JSON, nullable=False),
    Column("is_active", Boolean, nullable=False),
    # Stored as given: signing needs them. Never logged; masked in API answers after creation.
    Column("secret", String(100), nullable=False),
    Column("previous_secret", String(100)),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    Column("disabled_reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_webhooks_project", "project_id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),  # uuid5(job, webhook, event): also the webhook-id header
    Column("webhook_id", String(40), nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("job_id", String(36)),
    Column("event_type", String(32), nullable=False),
    Column("body", Text, nullable=False),  # the exact bytes signed and sent, identical on every attempt
    Column("status", String(16), nullable=False),  # PENDING | SUCCEEDED | FAILED
    Column("attempts", Integer, nullable=False),  # every attempt ever; also the claim token
    Column("round_start", Integer, nullable=False),  # attempts when the current round (first send or replay) began
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("claimed_until", DateTime(timezone=True)),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    Index("ix_webhook_deliveries_webhook", "webhook_id", "created_at"),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("delivery_id", String(36), nullable=False),
    Column("webhook_id", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),  # succeeded | retry | failed | disabled
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
    Column("response_body", Text),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_webhook_attempts_delivery", "delivery_id", "attempt"),
)
