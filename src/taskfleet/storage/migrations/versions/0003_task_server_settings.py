"""task servers: reported and admin-set client limit and heartbeat; assigned count

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_server") as batch:
        batch.add_column(
            sa.Column("reported_client_limit", sa.Integer(), server_default="5000", nullable=False)
        )
        batch.add_column(
            sa.Column(
                "reported_heartbeat_period_s", sa.Float(), server_default="10", nullable=False
            )
        )
        batch.add_column(sa.Column("admin_client_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("admin_heartbeat_period_s", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("assigned_count", sa.Integer(), server_default="0", nullable=False)
        )
    # Until now the values in effect were the ones the task server registered with, and
    # the load was counted on each assignment.
    op.execute(
        "UPDATE task_server SET reported_client_limit = client_limit, "
        "reported_heartbeat_period_s = heartbeat_period_s, "
        "assigned_count = (SELECT count(*) FROM computer "
        "WHERE computer.task_server_id = task_server.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("task_server") as batch:
        batch.drop_column("assigned_count")
        batch.drop_column("admin_heartbeat_period_s")
        batch.drop_column("admin_client_limit")
        batch.drop_column("reported_heartbeat_period_s")
        batch.drop_column("reported_client_limit")
