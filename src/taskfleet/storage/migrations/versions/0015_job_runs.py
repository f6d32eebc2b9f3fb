"""runs of jobs: a run names a task or a job, and keeps the job's plan (issue 9)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.alter_column("task_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("job_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("plan", sa.JSON(), nullable=True))
    op.create_index("ix_run_job_created", "run", ["job_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_run_job_created", table_name="run")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("plan")
        batch.drop_column("job_id")
        batch.alter_column("task_id", existing_type=sa.Integer(), nullable=False)
