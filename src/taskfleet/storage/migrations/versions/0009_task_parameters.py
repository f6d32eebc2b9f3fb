"""declared task parameters, run parameters, secrets at rest (issue 9)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 21:00:00
"""

from __future__ import annotations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved: filled in by the change that adds these columns


def downgrade() -> None:
    pass
