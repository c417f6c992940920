"""invoice-svc's tables and the queries on them.

Amounts are stored as integers of the currency's minor unit (cents), so both
SQLite and PostgreSQL keep them exact. ``chase_pending`` + ``overdue_at`` carry
an index that lets overdue detection read only the invoices that are due.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Money
from dunning_events.money import from_minor, to_minor
from dunning_runtime import bulk
from dunning_runtime.db import SequenceId
from dunning_runtime.pagination import keyset
from invoice_svc.domain import Balance, InvoiceStatus, Standing
from invoice_svc.models import InvoiceIn

InvoiceKey = tuple[str, str]  # tenant, invoice_id
AllocationKey = tuple[str, str, str]  # tenant, payment_id, invoice_id

metadata = MetaData()

invoices = Table(
    "invoices",
    metadata,
    # seq orders pages for cursors; (tenant, invoice_id) is the identity.
    Column("seq", SequenceId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("invoice_id", String(100), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("account_name", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_due_minor", BigInteger, nullable=False),
    Column("amount_paid_minor", BigInteger, nullable=False, default=0),
    Column("credited_minor", BigInteger, nullable=False, default=0),
    Column("status", String(20), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("segment", String(50), nullable=False),
    Column("locale", String(20), nullable=False),
    Column("disputed", Boolean, nullable=False, default=False),
    Column("dispute_reason", Text),
    Column("disputed_minor", BigInteger),
    Column("disputed_at", DateTime(timezone=True)),
    Column("void_reason", Text),
    Column("voided_at", DateTime(timezone=True)),
    Column("settled_at", DateTime(timezone=True)),
    Column("overdue_at", DateTime(timezone=True), nullable=False),
    Column("overdue_notified_at", DateTime(timezone=True)),
    # True while the invoice is chased and InvoiceOverdue is still owed.
    Column("chase_pending", Boolean, nullable=False),
    Column("request", JSON, nullable=False),  # the accepted body, for idempotency checks
    # The W3C traceparent the invoice was created under: overdue detection, which the
    # clock causes, starts a trace of its own linked to it (docs/observability.md).
    Column("traceparent", String(100)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant", "invoice_id", name="uq_invoices_tenant_invoice"),
    Index("ix_invoices_tenant_account", "tenant", "account_id"),
    Index("ix_invoices_tenant_status", "tenant", "status"),
    Index("ix_invoices_tenant_due", "tenant", "due_date"),
    Index("ix_invoices_overdue_due", "chase_pending", "overdue_at"),
)

# Allocations seen on the payments topic, kept so a reversal can undo them and
# so a payment that arrives before its invoice is applied when the invoice comes.
allocations = Table(
    "payment_allocations",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("payment_id", String(100), primary_key=True),
    Column("invoice_id", String(100), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    # Early-payment discount the allocation took (credited to the invoice), given back
    # with the allocation on a reversal.
    Column("discount_minor", BigInteger, nullable=False, default=0),
    Column("applied", Boolean, nullable=False),
    Column("reversed", Boolean, nullable=False, default=False),
    Index("ix_allocations_invoice", "tenant", "invoice_id"),
)


#: A stored invoice: as read, or as a dict being changed in memory.
Row = RowMapping | dict[str, Any]


def money(minor: int, currency: str) -> Money:
    """Minor units as ``Money``."""
    return Money(amount=from_minor(minor, currency), currency=currency)


def balance_of(row: Row) -> Balance:
    """The money side of a stored invoice."""
    currency = row["currency"]
    return Balance(
        amount_due=from_minor(row["amount_due_minor"], currency),
        amount_paid=from_minor(row["amount_paid_minor"], currency),
        credited=from_minor(row["credited_minor"], currency),
        voided=row["status"] == InvoiceStatus.VOID,
    )


async def get_invoice(
    session: AsyncSession, tenant: str, invoice_id: str, *, for_update: bool = False
) -> RowMapping | None:
    """One invoice of ``tenant``; ``for_update`` locks the row until the transaction ends."""
    query = select(invoices).where(invoices.c.tenant == tenant, invoices.c.invoice_id == invoice_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).mappings().first()


async def get_invoices(
    session: AsyncSession, tenant: str, ids: Iterable[str], *, for_update: bool = False
) -> dict[str, RowMapping]:
    """Invoices of ``tenant`` among ``ids``, by id (one query for a whole batch)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(invoices).where(invoices.c.tenant == tenant, invoices.c.invoice_id.in_(wanted))
    if for_update:
        query = query.with_for_update()
    rows = await session.execute(query)
    return {row["invoice_id"]: row for row in rows.mappings()}


async def account_of_invoices(
    session: AsyncSession, tenant: str, invoice_ids: Iterable[str]
) -> dict[str, str]:
    """The account of each known invoice among ``invoice_ids`` (no lock: to choose locks)."""
    wanted = sorted(set(invoice_ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(invoices.c.invoice_id, invoices.c.account_id).where(
            invoices.c.tenant == tenant, invoices.c.invoice_id.in_(wanted)
        )
    )
    return {invoice_id: account_id for invoice_id, account_id in rows}


async def pending_allocations(
    session: AsyncSession, tenant: str, invoice_ids: Iterable[str]
) -> dict[str, list[int]]:
    """Payments allocated to these invoices before the invoices arrived (minor units).

    Only sound under the account lock: a payment for the same account must not be
    storing a pending allocation while the invoice is being created.
    """
    wanted = sorted(set(invoice_ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(allocations.c.invoice_id, allocations.c.amount_minor).where(
            allocations.c.tenant == tenant,
            allocations.c.invoice_id.in_(wanted),
            allocations.c.applied.is_(False),
            allocations.c.reversed.is_(False),
        )
    )
    found: dict[str, list[int]] = {}
    for invoice_id, amount in rows:
        found.setdefault(invoice_id, []).append(int(amount))
    return found


async def insert_invoices(
    session: AsyncSession, tenant: str, rows: Sequence[dict[str, Any]], paid_from_pending: set[str]
) -> None:
    """Store new invoices; the pending allocations they consumed become applied."""
    if not rows:
        return
    await bulk.insert_rows(session, invoices, rows)
    if paid_from_pending:
        await session.execute(
            update(allocations)
            .where(allocations.c.tenant == tenant)
            .where(allocations.c.invoice_id.in_(sorted(paid_from_pending)))
            .where(allocations.c.applied.is_(False))
            .where(allocations.c.reversed.is_(False))
            .values(applied=True)
        )


def new_row(
    item: InvoiceIn,
    body: dict[str, Any],
    *,
    tenant: str,
    now: datetime,
    overdue_at: datetime,
    paid_minor: int,
    standing: Standing,
    traceparent: str | None,
) -> dict[str, Any]:
    """The row of a newly accepted invoice (``body`` is its JSON, kept for replays), already
    paid by ``paid_minor`` from allocations that arrived before it; ``standing`` and
    ``overdue_at`` are the rules' (``domain``); ``traceparent``, the request's
    (``current_traceparent``: read once per batch, the span is the same for each row)."""
    currency = item.currency
    return {
        "tenant": tenant,
        "invoice_id": item.invoice_id,
        "account_id": item.account_id,
        "account_name": item.account_name,
        "currency": currency,
        "amount_due_minor": to_minor(item.amount_due, currency),
        "amount_paid_minor": paid_minor,
        "credited_minor": 0,
        "status": standing.status.value,
        "issue_date": item.issue_date,
        "due_date": item.due_date,
        "timezone": item.timezone,
        "segment": item.segment,
        "locale": item.locale,
        "disputed": False,
        "dispute_reason": None,
        "disputed_minor": None,
        "disputed_at": None,
        "void_reason": None,
        "voided_at": None,
        "settled_at": standing.settled_at,
        "overdue_at": overdue_at,
        "overdue_notified_at": None,
        "chase_pending": standing.chase_pending,
        "request": body,
        "traceparent": traceparent,
        "created_at": now,
        "updated_at": now,
    }


def standing_of(row: RowMapping | dict[str, Any]) -> Standing:
    """The standing a stored invoice has (status, chase flag, ``settled_at``)."""
    return Standing(
        status=InvoiceStatus(row["status"]),
        chase_pending=bool(row["chase_pending"]),
        settled_at=row["settled_at"],
    )


def changed_values(
    row: RowMapping | dict[str, Any],
    now: datetime,
    balance: Balance,
    standing: Standing,
    **changes: Any,
) -> dict[str, Any]:
    """The columns to write for a new ``balance`` and the ``standing`` the rules gave it
    (and other ``changes``)."""
    currency = row["currency"]
    return {
        "amount_paid_minor": to_minor(balance.amount_paid, currency),
        "credited_minor": to_minor(balance.credited, currency),
        "status": standing.status.value,
        "chase_pending": standing.chase_pending,
        "settled_at": standing.settled_at,
        "updated_at": now,
        **changes,
    }


async def store(
    session: AsyncSession, row: RowMapping | dict[str, Any], values: dict[str, Any]
) -> dict[str, Any]:
    """Write ``values`` (``changed_values``) into the invoice's row; returns the row as it
    now is."""
    await session.execute(update(invoices).where(invoices.c.seq == row["seq"]).values(**values))
    return {**dict(row), **values}


async def overdue_accounts(
    session: AsyncSession, now: datetime, limit: int
) -> list[tuple[str, str]]:
    """``(tenant, account)`` of up to ``limit`` invoices owed an ``InvoiceOverdue`` at
    ``now``, earliest first, read without locks (to choose which accounts to lock)."""
    rows = await session.execute(
        select(invoices.c.tenant, invoices.c.account_id)
        .where(invoices.c.chase_pending.is_(True), invoices.c.overdue_at <= now)
        .order_by(invoices.c.overdue_at, invoices.c.seq)
        .limit(limit)
    )
    return sorted({(tenant, account) for tenant, account in rows})


async def claim_overdue(
    session: AsyncSession, now: datetime, accounts: Sequence[tuple[str, str]], limit: int
) -> Sequence[RowMapping]:
    """Up to ``limit`` invoices of ``accounts`` owed an ``InvoiceOverdue`` at ``now``,
    marked as announced. Reads through the (chase_pending, overdue_at) index."""
    if not accounts:
        return []
    rows = (
        (
            await session.execute(
                select(invoices)
                .where(
                    invoices.c.chase_pending.is_(True),
                    invoices.c.overdue_at <= now,
                    # One row-value IN: an OR of ANDs costs seconds to build for 500 accounts.
                    tuple_(invoices.c.tenant, invoices.c.account_id).in_(list(accounts)),
                )
                .order_by(invoices.c.overdue_at, invoices.c.seq)
                .limit(limit)
                .with_for_update()
            )
        )
        .mappings()
        .all()
    )
    if rows:
        await session.execute(
            update(invoices)
            .where(invoices.c.seq.in_([r["seq"] for r in rows]))
            .values(chase_pending=False, overdue_notified_at=now)
        )
    return rows


async def list_invoices(
    session: AsyncSession,
    tenant: str,
    *,
    account_id: str | None,
    status: str | None,
    due_before: date | None,
    due_after: date | None,
    after: int | None,
    limit: int,
) -> Sequence[RowMapping]:
    """Up to ``limit`` + 1 invoices of ``tenant`` matching the filters, after sequence id
    ``after``, in the order they were accepted (the one more says a next page exists)."""
    query = select(invoices).where(invoices.c.tenant == tenant)
    if account_id is not None:
        query = query.where(invoices.c.account_id == account_id)
    if status is not None:
        query = query.where(invoices.c.status == status)
    if due_before is not None:
        query = query.where(invoices.c.due_date <= due_before)
    if due_after is not None:
        query = query.where(invoices.c.due_date >= due_after)
    rows = await session.execute(keyset(query, invoices.c.seq, after, limit))
    return rows.mappings().all()


# -- payments: a chunk's allocations and invoices, read and written at once ---------------

#: The invoice columns a payment can change, written back for every changed invoice.
PAYMENT_COLUMNS = (
    "amount_paid_minor",
    "credited_minor",
    "status",
    "chase_pending",
    "settled_at",
    "overdue_notified_at",
    "updated_at",
)


async def allocations_of_payments(
    session: AsyncSession, payment_keys: Iterable[tuple[str, str]]
) -> dict[AllocationKey, dict[str, Any]]:
    """Every recorded allocation of the ``(tenant, payment_id)`` pairs, by key (one query)."""
    wanted = sorted(set(payment_keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(allocations).where(
            bulk.pairs_in(allocations.c.tenant, allocations.c.payment_id, wanted)
        )
    )
    return {(r["tenant"], r["payment_id"], r["invoice_id"]): dict(r) for r in rows.mappings()}


async def invoices_by_key(
    session: AsyncSession, keys: Iterable[InvoiceKey], *, lock: bool
) -> dict[InvoiceKey, dict[str, Any]]:
    """The invoices among ``(tenant, invoice_id)`` keys, by key (one query); ``lock``
    locks their rows until the transaction ends."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    query = select(invoices).where(bulk.pairs_in(invoices.c.tenant, invoices.c.invoice_id, wanted))
    if lock:
        query = query.with_for_update()
    rows = await session.execute(query)
    return {(r["tenant"], r["invoice_id"]): dict(r) for r in rows.mappings()}


def allocation_row(
    key: AllocationKey,
    amount: Money,
    *,
    applied: bool,
    reversed_: bool,
    discount: Decimal | None = None,
) -> dict[str, Any]:
    """One allocation of a payment as stored: applied to its invoice (with the discount
    it credited), or waiting for it."""
    tenant, payment_id, invoice_id = key
    return {
        "tenant": tenant,
        "payment_id": payment_id,
        "invoice_id": invoice_id,
        "currency": amount.currency,
        "amount_minor": to_minor(amount.amount, amount.currency),
        "discount_minor": to_minor(discount, amount.currency) if discount else 0,
        "applied": applied,
        "reversed": reversed_,
    }


async def write_payments(
    session: AsyncSession,
    new_allocations: Sequence[dict[str, Any]],
    reversed_allocations: Iterable[AllocationKey],
    changed_invoices: Sequence[RowMapping | dict[str, Any]],
) -> None:
    """A chunk's changes, one statement per kind, each run for all the rows it concerns:
    new allocations, allocations now reversed, and the invoices' ``PAYMENT_COLUMNS``."""
    await bulk.insert_rows(session, allocations, new_allocations)
    reversed_keys = sorted(reversed_allocations)
    if reversed_keys:
        await session.execute(
            update(allocations)
            .where(
                allocations.c.tenant == bindparam("k_tenant"),
                allocations.c.payment_id == bindparam("k_payment"),
                allocations.c.invoice_id == bindparam("k_invoice"),
            )
            .values(reversed=True),
            [{"k_tenant": t, "k_payment": p, "k_invoice": i} for t, p, i in reversed_keys],
        )
    await bulk.update_rows(session, invoices, changed_invoices, "seq", PAYMENT_COLUMNS)
