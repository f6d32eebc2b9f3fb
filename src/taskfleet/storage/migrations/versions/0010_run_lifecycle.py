"""run expiry, instance deadlines, cancel, retries (issue 9)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 21:00:00

``run.expires_at``: instances no agent received by then end ``Expired`` (ns.expiry);
existing runs get their creation time plus the default 7 days.
``instance.reason``: why the NS (or the agent) ended an instance the way it did
(expired, past its deadline, canceled, agent restarted during the run).
``instance.cancel_at`` / ``cancel_sent_at``: a cancel asked for an instance a task
server or agent may hold, and when the stop notice last went out (ns.cancel).
``task.retries`` / ``task.retry_backoff_s``: the agent's retries (agent.retries).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

DEFAULT_EXPIRY_S = 7 * 24 * 3600


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("expires_at", sa.Float(), nullable=True))
    op.execute(f"UPDATE run SET expires_at = created_at + {DEFAULT_EXPIRY_S}")
    with op.batch_alter_table("instance") as batch:
        batch.add_column(sa.Column("reason", sa.String(500), nullable=True))
        batch.add_column(sa.Column("cancel_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cancel_sent_at", sa.Float(), nullable=True))
    op.create_index("ix_instance_cancel_at", "instance", ["cancel_at"])
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("retry_backoff_s", sa.Float(), nullable=False, server_default="10")
        )


def downgrade() -> None:
    with op.batch_alter_table("task") as batch:
        batch.drop_column("retry_backoff_s")
        batch.drop_column("retries")
    op.drop_index("ix_instance_cancel_at", table_name="instance")
    with op.batch_alter_table("instance") as batch:
        batch.drop_column("cancel_sent_at")
        batch.drop_column("cancel_at")
        batch.drop_column("reason")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("expires_at")
