"""Accounts (with the indexed timer), their timelines and policy versions.

Revision ID: dunning_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "dunning_0001"
down_revision = None
branch_labels = ("dunning",)
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("segment", sa.String(length=50), nullable=False),
        sa.Column("stage", sa.String(length=50), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("written_off", sa.Boolean(), nullable=False),
        sa.Column("overdue_e4", sa.BigInteger(), nullable=False),
        sa.Column("oldest_due_date", sa.Date(), nullable=True),
        sa.Column("next_action_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("tenant", "account_id", name="uq_accounts_tenant_account"),
    )
    op.create_index("ix_accounts_next_action", "accounts", ["next_action_at"])
    op.create_index("ix_accounts_worklist", "accounts", ["tenant", "stage", "segment"])
    op.create_table(
        "timeline",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_timeline_account", "timeline", ["tenant", "account_id", "seq"])
    op.create_table(
        "policies",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("segment", sa.String(length=50), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("apply_to_running", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "segment", "version"),
    )


def downgrade() -> None:
    op.drop_table("policies")
    op.drop_index("ix_timeline_account", table_name="timeline")
    op.drop_table("timeline")
    op.drop_index("ix_accounts_worklist", table_name="accounts")
    op.drop_index("ix_accounts_next_action", table_name="accounts")
    op.drop_table("accounts")
