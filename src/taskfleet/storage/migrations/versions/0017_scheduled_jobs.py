"""schedules of jobs: a schedule names a task or a job (issue 9)

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-25 22:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedule") as batch:
        batch.alter_column("task_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("job_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedule") as batch:
        batch.drop_column("job_id")
        batch.alter_column("task_id", existing_type=sa.Integer(), nullable=False)
