"""jobs, memory_events, memory_history

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("agent_id", sa.String(256), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("facts", sa.JSON),
        sa.Column("embeddings", sa.LargeBinary),
        sa.Column("plan", sa.JSON),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_jobs_project_status", "jobs", ["project_id", "status"])
    op.create_index("ix_jobs_status_updated", "jobs", ["status", "updated_at"])
    op.create_table(
        "memory_events",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("memory_id", sa.String(36), nullable=False),
        sa.Column("event", sa.String(8), nullable=False),
        sa.Column("memory", sa.Text, nullable=False),
        sa.Column("previous_memory", sa.Text),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_memory_events_memory", "memory_events", ["memory_id"])
    op.create_table(
        "memory_history",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("memory_id", sa.String(36), nullable=False),
        sa.Column("old_memory", sa.Text),
        sa.Column("new_memory", sa.Text),
        sa.Column("event", sa.String(8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS),
        sa.Column("is_deleted", sa.Boolean, nullable=False),
        sa.Column("actor_id", sa.String(256)),
        sa.Column("role", sa.String(32)),
        sa.Column("job_id", sa.String(36)),
    )
    op.create_index("ix_memory_history_memory", "memory_history", ["project_id", "memory_id", "created_at"])


def downgrade() -> None:
    op.drop_table("memory_history")
    op.drop_table("memory_events")
    op.drop_table("jobs")
