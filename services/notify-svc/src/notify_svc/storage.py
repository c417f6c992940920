"""notify-svc's tables and the queries on them.

``notifications`` is the ledger of every request: its row is written (the
idempotency key, ``tenant`` + ``notification_id``) before anything is sent, and
the send's outcome after. ``account_stages`` keeps the latest stage change seen
per account, for suppressing notices made obsolete by a return to ``current``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

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
    and_,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.db import SequenceId, utc
from notify_svc.domain import ContactMade

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


async def existing_notifications(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which ``(tenant, notification_id)`` are recorded already."""
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    rows = await session.execute(
        select(notifications.c.tenant, notifications.c.notification_id).where(
            tuple_(notifications.c.tenant, notifications.c.notification_id).in_(wanted)
        )
    )
    return {(t, n) for t, n in rows}


async def stages_of(
    session: AsyncSession, accounts: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest stage change seen per ``(tenant, account_id)``."""
    wanted = sorted(set(accounts))
    if not wanted:
        return {}
    rows = await session.execute(
        select(account_stages).where(
            tuple_(account_stages.c.tenant, account_stages.c.account_id).in_(wanted)
        )
    )
    return {(r["tenant"], r["account_id"]): dict(r) for r in rows.mappings()}


async def opted_out(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> set[tuple[str, str, str]]:
    """``(tenant, address, channel)`` opt-outs among the ``(tenant, address)`` given."""
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    rows = await session.execute(
        select(opt_outs.c.tenant, opt_outs.c.address, opt_outs.c.channel).where(
            tuple_(opt_outs.c.tenant, opt_outs.c.address).in_(wanted)
        )
    )
    return {(t, a, c) for t, a, c in rows}


async def template_overrides(
    session: AsyncSession, tenants: Iterable[str]
) -> dict[str, dict[str, dict[str, str]]]:
    """Every tenant's template overrides: ``{tenant: {key: parts}}``."""
    wanted = sorted(set(tenants))
    if not wanted:
        return {}
    rows = await session.execute(select(templates).where(templates.c.tenant.in_(wanted)))
    found: dict[str, dict[str, dict[str, str]]] = {t: {} for t in wanted}
    for row in rows.mappings():
        found[row["tenant"]][row["key"]] = dict(row["parts"])
    return found


async def profiles_of(session: AsyncSession, tenants: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The tenants' sender profiles (missing ones are absent)."""
    wanted = sorted(set(tenants))
    if not wanted:
        return {}
    rows = await session.execute(select(profiles).where(profiles.c.tenant.in_(wanted)))
    return {r["tenant"]: dict(r["profile"]) for r in rows.mappings()}


async def pending_of_accounts(
    session: AsyncSession, accounts: Iterable[tuple[str, str]]
) -> Sequence[RowMapping]:
    """The pending notices of ``accounts``."""
    wanted = sorted(set(accounts))
    if not wanted:
        return []
    rows = await session.execute(
        select(notifications).where(
            notifications.c.status == "pending",
            tuple_(notifications.c.tenant, notifications.c.account_id).in_(wanted),
        )
    )
    return rows.mappings().all()


async def due_seqs(session: AsyncSession, now: datetime, wall: datetime, limit: int) -> list[int]:
    """Up to ``limit`` pending notices due at ``now`` (service clock) whose lease, if any,
    has expired at ``wall``, earliest first."""
    rows = await session.execute(
        select(notifications.c.seq)
        .where(
            notifications.c.status == "pending",
            notifications.c.due_at <= now,
            or_(notifications.c.lease_until.is_(None), notifications.c.lease_until < wall),
        )
        .order_by(notifications.c.due_at, notifications.c.seq)
        .limit(limit)
    )
    return [seq for (seq,) in rows]


async def claim(
    session: AsyncSession, seqs: Sequence[int], owner: str, wall: datetime, until: datetime
) -> Sequence[RowMapping]:
    """Lease the notices ``seqs`` that are still pending and unleased to ``owner``; returns
    the rows leased (a concurrent instance may have taken some)."""
    if not seqs:
        return []
    await session.execute(
        update(notifications)
        .where(
            notifications.c.seq.in_(list(seqs)),
            notifications.c.status == "pending",
            or_(notifications.c.lease_until.is_(None), notifications.c.lease_until < wall),
        )
        .values(lease_owner=owner, lease_until=until)
    )
    rows = await session.execute(
        select(notifications).where(
            notifications.c.seq.in_(list(seqs)),
            and_(notifications.c.lease_owner == owner, notifications.c.status == "pending"),
        )
    )
    return rows.mappings().all()


async def update_owned(session: AsyncSession, seq: int, owner: str, **values: Any) -> bool:
    """Write ``values`` to a notice still pending and leased to ``owner``; False when it is
    not (another instance took it over, or it was suppressed meanwhile)."""
    result = await session.execute(
        update(notifications)
        .where(
            notifications.c.seq == seq,
            notifications.c.lease_owner == owner,
            notifications.c.status == "pending",
        )
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


async def contacts_of(
    session: AsyncSession, row: RowMapping, wall: datetime, now: datetime
) -> list[ContactMade]:
    """The account's other notices that went out (at ``sent_at``) or are being sent by
    a live instance (its lease runs past ``wall``; counted at ``now``)."""
    found = await session.execute(
        select(
            notifications.c.stage_sequence,
            notifications.c.stage,
            notifications.c.status,
            notifications.c.sent_at,
        ).where(
            notifications.c.tenant == row["tenant"],
            notifications.c.account_id == row["account_id"],
            notifications.c.seq != row["seq"],
            or_(
                notifications.c.status == "sent",
                and_(
                    notifications.c.status == "pending",
                    notifications.c.send_started_at.is_not(None),
                    notifications.c.lease_until >= wall,
                ),
            ),
        )
    )
    return [
        ContactMade(
            stage_sequence=sequence,
            stage=stage,
            at=(utc(sent_at) if status == "sent" else None) or now,
            in_flight=status != "sent",
        )
        for sequence, stage, status, sent_at in found
    ]
