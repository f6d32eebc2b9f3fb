"""files for copy-file tasks; inventory (issue 9)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_file",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
    )
    op.create_index("ix_stored_file_sha256", "stored_file", ["sha256"])
    op.create_table(
        "file_chunk",
        sa.Column(
            "file_id",
            sa.Integer(),
            sa.ForeignKey("stored_file.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    with op.batch_alter_table("computer") as batch:
        batch.add_column(sa.Column("inventory", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("inventory_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("computer") as batch:
        batch.drop_column("inventory_at")
        batch.drop_column("inventory")
    op.drop_table("file_chunk")
    op.drop_index("ix_stored_file_sha256", "stored_file")
    op.drop_table("stored_file")
