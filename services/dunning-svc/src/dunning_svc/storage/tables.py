"""The tables of dunning-svc and the names the storage modules share."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from dunning_runtime.db import SequenceId

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("seq", SequenceId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("segment", String(50), nullable=False),
    Column("stage", String(50), nullable=False),
    Column("policy_version", Integer),
    Column("paused", Boolean, nullable=False),
    Column("written_off", Boolean, nullable=False),
    # The overdue balance summed over currencies in units of 10^-4, for sorting and
    # min_overdue; the exact per-currency balances are in ``state``.
    Column("overdue_e4", BigInteger, nullable=False),
    Column("oldest_due_date", Date),
    Column("next_action_at", DateTime(timezone=True)),
    Column("last_contact_at", DateTime(timezone=True)),
    Column("state", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The W3C traceparent of the account's last input (event or action): a timer's
    # decision starts a trace of its own and links to it (docs/observability.md).
    Column("last_traceparent", String(100)),
    UniqueConstraint("tenant", "account_id", name="uq_accounts_tenant_account"),
    Index("ix_accounts_next_action", "next_action_at"),
    Index("ix_accounts_worklist", "tenant", "stage", "segment"),
)

timeline = Table(
    "timeline",
    metadata,
    Column("seq", SequenceId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    # input (an event received), decision, stage, command (an event emitted), action
    Column("kind", String(20), nullable=False),
    Column("summary", Text, nullable=False),
    Column("actor", String(200)),
    Column("policy_version", Integer),
    Column("data", Text),
    Index("ix_timeline_account", "tenant", "account_id", "seq"),
)

policies = Table(
    "policies",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("segment", String(50), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("body", Text, nullable=False),
    Column("apply_to_running", Boolean, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: The account columns a change writes back (besides ``state``).
WRITTEN_COLUMNS = (
    "segment",
    "stage",
    "policy_version",
    "paused",
    "written_off",
    "overdue_e4",
    "oldest_due_date",
    "next_action_at",
    "last_contact_at",
    "state",
    "updated_at",
)

E4 = Decimal(10_000)

Key = tuple[str, str]
