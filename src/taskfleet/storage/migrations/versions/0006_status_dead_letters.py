"""task servers: status events the NS could not apply (dead letters)

Each task server reports in its heartbeat how many status events it has set aside in
its dead-letter file, and why the latest was (R12); the NS keeps them on its row for
the console and the CLI.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_server") as batch:
        batch.add_column(
            sa.Column("dead_letters", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("dead_letter_reason", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_server") as batch:
        batch.drop_column("dead_letter_reason")
        batch.drop_column("dead_letters")
