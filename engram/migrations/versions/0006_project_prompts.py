"""projects.custom_fact_extraction_prompt and projects.custom_update_memory_prompt

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("custom_fact_extraction_prompt", sa.Text))
        batch.add_column(sa.Column("custom_update_memory_prompt", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("custom_update_memory_prompt")
        batch.drop_column("custom_fact_extraction_prompt")
