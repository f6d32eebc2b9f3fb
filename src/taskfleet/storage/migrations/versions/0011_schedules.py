"""schedules, maintenance windows, completion requirements (issue 9)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 21:00:00
"""

from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved: filled in by the change that adds these columns


def downgrade() -> None:
    pass
