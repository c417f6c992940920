"""``manual_clock``: the manual clock's instant, kept across restarts.

The table is written out here rather than taken from ``messaging_tables``, so this
revision creates the same table whatever the definition becomes later.

Revision ID: messaging_0006_manual_clock
Revises: messaging_0005_claim_owner
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "messaging_0006_manual_clock"
down_revision = "messaging_0005_claim_owner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "manual_clock",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("now", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("manual_clock")
