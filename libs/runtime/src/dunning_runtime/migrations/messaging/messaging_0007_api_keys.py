"""``api_keys``: managed API keys, stored as a keyed hash (``dunning_runtime.api_keys``).

The table is written out here rather than taken from ``messaging_tables``, so this
revision creates the same table whatever the definition becomes later.

Revision ID: messaging_0007_api_keys
Revises: messaging_0006_manual_clock
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "messaging_0007_api_keys"
down_revision = "messaging_0006_manual_clock"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=True),
        sa.Column("prefix", sa.String(40), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
