"""run expiry, instance deadlines, cancel, retries (issue 9)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 21:00:00
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved: filled in by the change that adds these columns


def downgrade() -> None:
    pass
