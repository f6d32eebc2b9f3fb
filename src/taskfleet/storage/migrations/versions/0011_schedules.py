"""schedules, maintenance windows, completion requirements (issue 9)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Final instance states when this revision was written (protocol.messages.InstanceState).
OPEN_STATES = "('Pending', 'Received', 'Running')"


def upgrade() -> None:
    op.create_table(
        "schedule",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "task_id", sa.Integer(), sa.ForeignKey("task.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("exclude", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("ignore_windows", sa.Boolean(), nullable=False),
        sa.Column("requirements", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("at", sa.Float(), nullable=True),
        sa.Column("cron", sa.String(255), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("next_fire_at", sa.Float(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("fired_count", sa.Integer(), nullable=False),
        sa.Column("last_fired_at", sa.Float(), nullable=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
    )
    op.create_index("ix_schedule_next_fire_at", "schedule", ["next_fire_at"])
    op.create_table(
        "maintenance_window",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "collection_id",
            sa.Integer(),
            sa.ForeignKey("collection.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("start_day", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Integer(), nullable=False),
        sa.Column("end_day", sa.Integer(), nullable=False),
        sa.Column("end_s", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
    )
    op.create_index("ix_maintenance_window_collection_id", "maintenance_window", ["collection_id"])
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("exclude", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("ignore_windows", sa.Boolean(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("requirements", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("ended_by", sa.String(32), nullable=True))
        batch.add_column(sa.Column("ended_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("schedule_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("scheduled_for", sa.Float(), nullable=True))
        batch.add_column(sa.Column("coalesced", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index("ix_run_ended_at", ["ended_at"])
        batch.create_unique_constraint(
            "uq_run_schedule_id_scheduled_for", ["schedule_id", "scheduled_for"]
        )
    # Runs already over end as they did before requirements existed: all computers done.
    op.execute(
        "UPDATE run SET ended_by = 'all_done', ended_at = created_at WHERE NOT EXISTS "
        f"(SELECT 1 FROM instance WHERE instance.run_id = run.id AND state IN {OPEN_STATES})"
    )


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_constraint("uq_run_schedule_id_scheduled_for", type_="unique")
        batch.drop_index("ix_run_ended_at")
        for column in (
            "coalesced",
            "scheduled_for",
            "schedule_id",
            "ended_at",
            "ended_by",
            "requirements",
            "ignore_windows",
            "exclude",
        ):
            batch.drop_column(column)
    op.drop_index("ix_maintenance_window_collection_id", "maintenance_window")
    op.drop_table("maintenance_window")
    op.drop_index("ix_schedule_next_fire_at", "schedule")
    op.drop_table("schedule")
