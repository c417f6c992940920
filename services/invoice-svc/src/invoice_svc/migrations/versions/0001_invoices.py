"""Invoices and payment allocations.

Revision ID: invoice_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "invoice_0001"
down_revision = None
branch_labels = ("invoice",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("invoice_id", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("account_name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_due_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid_minor", sa.BigInteger(), nullable=False),
        sa.Column("credited_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.String(length=50), nullable=False),
        sa.Column("locale", sa.String(length=20), nullable=False),
        sa.Column("disputed", sa.Boolean(), nullable=False),
        sa.Column("dispute_reason", sa.Text(), nullable=True),
        sa.Column("disputed_minor", sa.BigInteger(), nullable=True),
        sa.Column("disputed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("overdue_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("chase_pending", sa.Boolean(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("tenant", "invoice_id", name="uq_invoices_tenant_invoice"),
    )
    op.create_index(
        "ix_invoices_overdue_due", "invoices", ["chase_pending", "overdue_at"], unique=False
    )
    op.create_index(
        "ix_invoices_tenant_account", "invoices", ["tenant", "account_id"], unique=False
    )
    op.create_index("ix_invoices_tenant_due", "invoices", ["tenant", "due_date"], unique=False)
    op.create_index("ix_invoices_tenant_status", "invoices", ["tenant", "status"], unique=False)
    op.create_table(
        "payment_allocations",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("payment_id", sa.String(length=100), nullable=False),
        sa.Column("invoice_id", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("reversed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "payment_id", "invoice_id"),
    )
    op.create_index(
        "ix_allocations_invoice", "payment_allocations", ["tenant", "invoice_id"], unique=False
    )


def downgrade() -> None:
    for table in ("payment_allocations", "invoices"):
        op.drop_table(table)
