"""collection membership: every computer in every collection, stored

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 12:00:00

The table starts empty: the NS fills it at its next start (``ns/membership.py``
computes every computer that has no membership yet).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collection_membership",
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("computer_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["computer_id"], ["computer.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("collection_id", "computer_id"),
    )
    op.create_index(
        op.f("ix_collection_membership_computer_id"),
        "collection_membership",
        ["computer_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_collection_membership_computer_id"), table_name="collection_membership")
    op.drop_table("collection_membership")
