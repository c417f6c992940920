"""Payments, their applications, payment-svc's view of invoices and webhook replays.

Revision ID: payment_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "payment_0001"
down_revision = None
branch_labels = ("payment",)
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("payment_id", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=120), nullable=False),
        sa.Column("credit_minor", sa.BigInteger(), nullable=False),
        sa.Column("held_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversal_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("tenant", "payment_id", name="uq_payments_tenant_payment"),
    )
    op.create_index("ix_payments_tenant_account", "payments", ["tenant", "account_id"])
    op.create_table(
        "applications",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("payment_id", sa.String(length=100), nullable=False),
        sa.Column("invoice_id", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False),
        sa.Column("reversed", sa.Boolean(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint(
            "tenant", "payment_id", "invoice_id", name="uq_applications_payment_invoice"
        ),
    )
    op.create_index("ix_applications_invoice", "applications", ["tenant", "invoice_id"])
    op.create_table(
        "invoices",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("invoice_id", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_due_minor", sa.BigInteger(), nullable=False),
        sa.Column("paid_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False),
        sa.Column("credited_minor", sa.BigInteger(), nullable=False),
        sa.Column("void", sa.Boolean(), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("discount_percent", sa.String(length=20), nullable=True),
        sa.Column("discount_days", sa.Integer(), nullable=True),
        sa.Column("settled_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("tenant", "invoice_id", name="uq_pinvoices_tenant_invoice"),
    )
    op.create_index("ix_pinvoices_tenant_account", "invoices", ["tenant", "account_id"])
    op.create_table(
        "webhook_events",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "provider", "event_id"),
    )


def downgrade() -> None:
    op.drop_table("webhook_events")
    op.drop_index("ix_pinvoices_tenant_account", table_name="invoices")
    op.drop_table("invoices")
    op.drop_index("ix_applications_invoice", table_name="applications")
    op.drop_table("applications")
    op.drop_index("ix_payments_tenant_account", table_name="payments")
    op.drop_table("payments")
