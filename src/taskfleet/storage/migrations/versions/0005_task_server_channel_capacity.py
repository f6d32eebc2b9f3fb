"""task servers: the notification channels their open-files limit allows

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_server") as batch:
        batch.add_column(sa.Column("channel_capacity", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_server") as batch:
        batch.drop_column("channel_capacity")
