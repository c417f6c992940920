"""``idempotency_keys.owner``: the instance whose request holds a claim, so a claim left by
a process that died is free at once (``dunning_runtime.liveness``) instead of after a
minute.

Revision ID: messaging_0005_claim_owner
Revises: messaging_0004_idempotency
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "messaging_0005_claim_owner"
down_revision = "messaging_0004_idempotency"
branch_labels = None
depends_on = None


def _columns() -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns("idempotency_keys")}


def upgrade() -> None:
    # Guarded: messaging_0002 is frozen now, but databases it made while it still built
    # the table from its live definition have the column already, and SQLite has no ADD
    # COLUMN IF NOT EXISTS: look first.
    if "owner" not in _columns():
        op.add_column("idempotency_keys", sa.Column("owner", sa.String(64), nullable=True))


def downgrade() -> None:
    if "owner" in _columns():
        op.drop_column("idempotency_keys", "owner")
