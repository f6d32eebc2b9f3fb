"""run history: output limits, retention, filters (issue 9)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 21:00:00
"""

from __future__ import annotations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved: filled in by the change that adds these columns


def downgrade() -> None:
    pass
