"""client jobs' step records: each step's state, return code and output (issue 9)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_step",
        sa.Column(
            "instance_id",
            sa.Integer(),
            sa.ForeignKey("instance.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("path", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("return_code", sa.Integer(), nullable=True),
        sa.Column("output", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instance_step")
