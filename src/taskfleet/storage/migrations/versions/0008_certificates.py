"""the NS certificate authority: issued certificates and revocations; node keys

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate",
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("principal", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("not_after", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.Column("reason", sa.String(255), nullable=False, server_default=""),
        sa.Column("pem", sa.Text(), nullable=False, server_default=""),
    )
    op.create_index("ix_certificate_revoked_at", "certificate", ["revoked_at"])
    op.create_index("ix_certificate_principal", "certificate", ["kind", "principal"])
    with op.batch_alter_table("computer") as batch:
        batch.add_column(sa.Column("key_id", sa.String(64), nullable=True))
    with op.batch_alter_table("task_server") as batch:
        batch.add_column(sa.Column("csr", sa.Text(), nullable=True))
        batch.add_column(sa.Column("key_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_server") as batch:
        batch.drop_column("key_id")
        batch.drop_column("csr")
    with op.batch_alter_table("computer") as batch:
        batch.drop_column("key_id")
    op.drop_index("ix_certificate_principal", "certificate")
    op.drop_index("ix_certificate_revoked_at", "certificate")
    op.drop_table("certificate")
