"""run history: output limits, retention, filters (issue 9)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 21:00:00

``run_target``: each run's targets as rows (``run-list --target``), filled in from
``run.targets`` for the runs there are; indexes for run-list's filters and for the
retention duty's cut-offs (ns.run_queries, ns.retention).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    target = op.create_table(
        "run_target",
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("run.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(255), primary_key=True),
    )
    op.create_index("ix_run_target_name", "run_target", ["name", "run_id"])
    op.create_index("ix_run_created_at", "run", ["created_at"])
    op.create_index("ix_run_task_created", "run", ["task_id", "id"])
    op.create_index("ix_instance_state_run", "instance", ["state", "run_id"])
    op.create_index("ix_status_seen_received_at", "status_seen", ["received_at"])
    conn = op.get_bind()
    rows = []
    for run_id, targets in conn.execute(sa.text("SELECT id, targets FROM run")):
        names = json.loads(targets) if isinstance(targets, str) else targets
        for name in dict.fromkeys(n for n in names or [] if isinstance(n, str)):
            rows.append({"run_id": run_id, "name": name[:255]})
        if len(rows) >= 5000:
            op.bulk_insert(target, rows)
            rows = []
    if rows:
        op.bulk_insert(target, rows)


def downgrade() -> None:
    op.drop_index("ix_status_seen_received_at", table_name="status_seen")
    op.drop_index("ix_instance_state_run", table_name="instance")
    op.drop_index("ix_run_task_created", table_name="run")
    op.drop_index("ix_run_created_at", table_name="run")
    op.drop_index("ix_run_target_name", table_name="run_target")
    op.drop_table("run_target")
