"""The test ledger's table.

Revision ID: ledger_0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "ledger_0001"
down_revision = None
branch_labels = ("ledger",)
depends_on = None


def upgrade() -> None:
    from tests.support.ledger import applied

    applied.create(op.get_bind())


def downgrade() -> None:
    op.drop_table("applied")
