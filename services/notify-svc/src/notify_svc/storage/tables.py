"""notify-svc's tables.

``notifications`` is the ledger of every request: its row is written (the
idempotency key, ``tenant`` + ``notification_id``) before anything is sent, and
the send's outcome after. ``account_stages`` keeps the latest stage change seen
per account, for suppressing notices made obsolete by a return to ``current``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
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

notifications = Table(
    "notifications",
    metadata,
    Column("seq", SequenceId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("notification_id", String(100), nullable=False),
    Column("account_id", String(100), nullable=False),
    Column("account_name", String(200), nullable=False),
    Column("stage", String(50), nullable=False),
    Column("stage_sequence", BigInteger, nullable=False),
    Column("channel", String(10), nullable=False),
    Column("template", String(100), nullable=False),
    Column("locale", String(35), nullable=False),
    Column("to_address", String(2000)),
    Column("cc", JSON, nullable=False),
    Column("subject", Text),
    Column("body_text", Text),
    Column("body_html", Text),
    Column("body_sms", Text),
    Column("message_id", String(300), nullable=False),
    Column("request", JSON, nullable=False),
    Column("traceparent", String(100)),
    Column("tracestate", String(600)),
    # pending (to be sent at due_at or later), sent, failed, suppressed
    Column("status", String(20), nullable=False),
    Column("reason", String(20)),  # why suppressed
    Column("error", Text),  # why failed or suppressed, for people; the last temporary error
    Column("permanent", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", DateTime(timezone=True), nullable=False),  # the service clock
    # Delivery bookkeeping, in wall-clock time (it waits for remote servers, not business).
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    Column("send_started_at", DateTime(timezone=True)),
    Column("first_attempt_at", DateTime(timezone=True)),
    Column("possible_duplicate", Boolean, nullable=False, default=False),
    Column("provider_message_id", String(500)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant", "notification_id", name="uq_notifications_tenant_id"),
    Index("ix_notifications_due", "status", "due_at"),
    Index("ix_notifications_account", "tenant", "account_id"),
)

account_stages = Table(
    "account_stages",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("account_id", String(100), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
    Column("stage", String(50), nullable=False),
    # The highest sequence of a change to ``current``; 0 when there was none.
    Column("current_sequence", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

opt_outs = Table(
    "opt_outs",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("address", String(320), primary_key=True),
    Column("channel", String(10), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

templates = Table(
    "templates",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("key", String(100), primary_key=True),
    Column("parts", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

profiles = Table(
    "profiles",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("profile", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("seq", SequenceId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("task_id", String(100), nullable=False),
    Column("notification_id", String(100), nullable=False),
    Column("account_id", String(100), nullable=False),
    Column("account_name", String(200), nullable=False),
    Column("stage", String(50), nullable=False),
    Column("contact", JSON, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body_text", Text, nullable=False),
    Column("total_overdue", JSON, nullable=False),
    Column("status", String(20), nullable=False),  # open, completed
    Column("outcome", String(20)),
    Column("note", Text),
    Column("promised_minor", BigInteger),
    Column("promised_currency", String(3)),
    Column("promised_date", Date),
    Column("completed_by", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    UniqueConstraint("tenant", "task_id", name="uq_tasks_tenant_id"),
    Index("ix_tasks_status", "tenant", "status"),
)
