"""The trace context each invoice was created under, for the links of overdue detection.

Revision ID: invoice_0003
Revises: invoice_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "invoice_0003"
down_revision = "invoice_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("traceparent")
