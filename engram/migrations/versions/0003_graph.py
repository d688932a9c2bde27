"""graph branch of jobs, relation_events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # All nullable: jobs created before graph memory simply have no graph branch.
    op.add_column("jobs", sa.Column("graph_state", sa.String(16)))
    op.add_column("jobs", sa.Column("graph_attempts", sa.Integer))
    op.add_column("jobs", sa.Column("graph_error", sa.Text))
    op.add_column("jobs", sa.Column("notify_claimed", sa.Boolean))
    op.create_table(
        "relation_events",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(8), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("relationship", sa.String(100), nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("relation_events")
    with op.batch_alter_table("jobs") as batch:
        for name in ("notify_claimed", "graph_error", "graph_attempts", "graph_state"):
            batch.drop_column(name)
