"""Messaging tables and the test ledger.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from dunning_runtime.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables()
    from tests.support.ledger import applied

    applied.create(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError
