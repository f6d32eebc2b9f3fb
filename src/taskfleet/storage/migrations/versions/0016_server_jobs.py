"""server jobs: a step's run names the job run it belongs to and its step (issue 9)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-25 21:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("parent_run_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("step", sa.Integer(), nullable=True))
    op.create_index("ix_run_parent_run_id", "run", ["parent_run_id"])


def downgrade() -> None:
    op.drop_index("ix_run_parent_run_id", table_name="run")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("step")
        batch.drop_column("parent_run_id")
