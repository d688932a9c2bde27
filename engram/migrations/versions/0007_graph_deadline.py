"""jobs.graph_opened_at: when a job's graph branch opened (its deadline counts from there)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("graph_opened_at", sa.DateTime(timezone=True)))
    # Branches open at upgrade time get their deadline from their last change, not never.
    op.execute("UPDATE jobs SET graph_opened_at = updated_at WHERE graph_state = 'PENDING'")
    # The sweeper's deadline pass: PENDING branches, oldest first.
    op.create_index("ix_jobs_graph_pending", "jobs", ["graph_state", "graph_opened_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_graph_pending", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("graph_opened_at")
