"""declared task parameters, run parameters, secrets at rest (issue 9)

A task's declared parameters live in its ``params`` JSON (no column). A run keeps the
values it was given: plain ones in ``run.params``, secret ones encrypted with the NS's
key in ``run.sealed_params`` (ns.parameters, ns.secrets).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("params", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("sealed_params", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_column("sealed_params")
        batch.drop_column("params")
