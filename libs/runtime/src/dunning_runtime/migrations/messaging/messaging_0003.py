"""An index on the inbox's ``received_at``, so retention purges without a full scan.

Revision ID: messaging_0003
Revises: messaging_0002
"""

from __future__ import annotations

from alembic import op

revision = "messaging_0003"
down_revision = "messaging_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Guarded: messaging_0001 is frozen now, but databases it made while it still built
    # the tables from their live definitions may have the index already.
    op.create_index("ix_inbox_received_at", "inbox", ["received_at"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_inbox_received_at", table_name="inbox", if_exists=True)
