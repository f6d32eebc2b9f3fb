"""enrolment tokens: revocation; computers: an admin's identity reset

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrolment_token") as batch:
        batch.add_column(sa.Column("revoked_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("revoked_by", sa.String(255), nullable=True))
    with op.batch_alter_table("computer") as batch:
        batch.add_column(sa.Column("reset_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("computer") as batch:
        batch.drop_column("reset_at")
    with op.batch_alter_table("enrolment_token") as batch:
        batch.drop_column("revoked_by")
        batch.drop_column("revoked_at")
