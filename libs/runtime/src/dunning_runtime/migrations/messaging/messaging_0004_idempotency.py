"""An index on ``idempotency_keys.created_at``, so retention purges without a full scan.

The revision id is the file name (tests find the head by it) and fits alembic_version's 32
characters.

Revision ID: messaging_0004_idempotency
Revises: messaging_0003
"""

from __future__ import annotations

from alembic import op

revision = "messaging_0004_idempotency"
down_revision = "messaging_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Guarded: messaging_0002 is frozen now, but databases it made while it still built
    # the table from its live definition (index included) have the index already.
    op.create_index(
        "ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"], if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys", if_exists=True)
