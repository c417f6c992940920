"""The early-payment discount each payment allocation took.

Revision ID: invoice_0002
Revises: invoice_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "invoice_0002"
down_revision = "invoice_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_allocations") as batch:
        batch.add_column(
            sa.Column("discount_minor", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("payment_allocations") as batch:
        batch.drop_column("discount_minor")
