"""batches; jobs.batch_id and jobs.idempotency_key

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("rejected", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(36)))
        batch.add_column(sa.Column("batch_index", sa.Integer))
        batch.add_column(sa.Column("idempotency_key", sa.String(200)))
    op.create_index("ix_jobs_batch", "jobs", ["batch_id", "status"])
    op.create_index("uq_jobs_idempotency", "jobs", ["project_id", "idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_jobs_idempotency", "jobs")
    op.drop_index("ix_jobs_batch", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("idempotency_key")
        batch.drop_column("batch_index")
        batch.drop_column("batch_id")
    op.drop_table("batches")
