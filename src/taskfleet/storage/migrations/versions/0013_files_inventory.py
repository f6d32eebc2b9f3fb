"""files for copy-file tasks; inventory (issue 9)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 21:00:00
"""

from __future__ import annotations

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved: filled in by the change that adds these tables


def downgrade() -> None:
    pass
