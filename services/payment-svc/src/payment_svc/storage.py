"""payment-svc's tables and the set-based queries on them.

Amounts are integers of the currency's minor unit. ``invoices`` is payment-svc's own
view of the invoices, built from invoice events: it never reads invoice-svc's tables.
``applications`` holds what each payment paid (``allocation`` when received,
``credit`` when applied later) and what it holds for invoices not yet known (``held``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
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
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import InvoiceIssued
from dunning_events.money import from_minor, to_minor
from dunning_runtime import bulk
from dunning_runtime.db import SequenceId
from dunning_runtime.pagination import keyset
from payment_svc.domain import ZERO, Applied, DiscountTerms, InvoiceState, Plan, Posted

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    Column("seq", SequenceId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("payment_id", String(100), nullable=False),
    Column("account_id", String(100), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("method", String(20), nullable=False),
    Column("reference", Text),
    Column("metadata", JSON, nullable=False),
    Column("request", JSON, nullable=False),  # the accepted body, for idempotency checks
    Column("source", String(120), nullable=False),
    # Free credit: neither applied nor held for a named invoice.
    Column("credit_minor", BigInteger, nullable=False),
    Column("held_minor", BigInteger, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reversed_at", DateTime(timezone=True)),
    Column("reversal_reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant", "payment_id", name="uq_payments_tenant_payment"),
    Index("ix_payments_tenant_account", "tenant", "account_id"),
)

applications = Table(
    "applications",
    metadata,
    Column("seq", SequenceId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("payment_id", String(100), nullable=False),
    Column("invoice_id", String(100), nullable=False),
    Column("account_id", String(100), nullable=False),
    Column("kind", String(20), nullable=False),  # allocation, credit, held
    Column("amount_minor", BigInteger, nullable=False),
    Column("discount_minor", BigInteger, nullable=False),
    Column("reversed", Boolean, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant", "payment_id", "invoice_id", name="uq_applications_payment_invoice"),
    Index("ix_applications_invoice", "tenant", "invoice_id"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("seq", SequenceId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("invoice_id", String(100), nullable=False),
    Column("account_id", String(100), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_due_minor", BigInteger, nullable=False),
    Column("paid_minor", BigInteger, nullable=False),
    Column("discount_minor", BigInteger, nullable=False),
    Column("credited_minor", BigInteger, nullable=False),
    Column("void", Boolean, nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("discount_percent", String(20)),
    Column("discount_days", Integer),
    # When invoice-svc announced it settled (InvoiceSettled), for the record.
    Column("settled_seen_at", DateTime(timezone=True)),
    UniqueConstraint("tenant", "invoice_id", name="uq_pinvoices_tenant_invoice"),
    Index("ix_pinvoices_tenant_account", "tenant", "account_id"),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("provider", String(50), primary_key=True),
    Column("event_id", String(100), primary_key=True),
    Column("response", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

Row = dict[str, Any]
InvoiceKey = tuple[str, str]  # tenant, invoice_id


def invoice_state(row: Row) -> InvoiceState:
    """The domain's view of a stored invoice."""
    currency = row["currency"]
    terms = None
    if row["discount_percent"] is not None and row["discount_days"] is not None:
        terms = DiscountTerms(Decimal(row["discount_percent"]), int(row["discount_days"]))
    issue: date = row["issue_date"]
    due: date = row["due_date"]
    return InvoiceState(
        invoice_id=row["invoice_id"],
        currency=currency,
        amount_due=from_minor(row["amount_due_minor"], currency),
        issue_date=issue,
        due_date=due,
        timezone=row["timezone"],
        discount_terms=terms,
        paid=from_minor(row["paid_minor"], currency),
        discounted=from_minor(row["discount_minor"], currency),
        credited=from_minor(row["credited_minor"], currency),
        void=bool(row["void"]),
        account_id=row["account_id"],
    )


def store_state(row: Row, state: InvoiceState) -> None:
    """Write ``state``'s money back into its invoice ``row``."""
    currency = row["currency"]
    row["paid_minor"] = to_minor(state.paid, currency)
    row["discount_minor"] = to_minor(state.discounted, currency)
    row["credited_minor"] = to_minor(state.credited, currency)
    row["void"] = state.void


def invoice_row(tenant: str, event: InvoiceIssued) -> Row:
    """The row of a newly issued invoice in payment-svc's view: nothing paid yet."""
    currency = event.amount_due.currency
    terms = event.terms.early_payment_discount
    return {
        "tenant": tenant,
        "invoice_id": event.invoice_id,
        "account_id": event.account_id,
        "currency": currency,
        "amount_due_minor": to_minor(event.amount_due.amount, currency),
        "paid_minor": 0,
        "discount_minor": 0,
        "credited_minor": 0,
        "void": False,
        "issue_date": event.issue_date,
        "due_date": event.due_date,
        "timezone": event.timezone,
        "discount_percent": str(terms.percent) if terms else None,
        "discount_days": terms.within_days if terms else None,
        "settled_seen_at": None,
    }


def payment_row(
    tenant: str, posted: Posted, plan: Plan, status: str, source: str, now: datetime
) -> Row:
    """The row of a payment accepted now, with where ``plan`` put its money and the
    ``status`` the rules gave it."""
    payment = posted.payment
    currency = payment.currency
    return {
        "tenant": tenant,
        "payment_id": payment.payment_id,
        "account_id": payment.account_id,
        "currency": currency,
        "amount_minor": to_minor(payment.amount, currency),
        # Stored in UTC: SQLite keeps no offset, and every stored instant is UTC.
        "received_at": payment.received_at.astimezone(UTC),
        "method": posted.method,
        "reference": posted.reference,
        "metadata": dict(posted.metadata),
        "request": posted.request,
        "source": source,
        "credit_minor": to_minor(plan.credit, currency),
        "held_minor": to_minor(sum((h.amount for h in plan.held), ZERO), currency),
        "status": status,
        "reversed_at": None,
        "reversal_reason": None,
        "created_at": now,
        "updated_at": now,
    }


def application_row(payment: Row, applied: Applied, kind: str, now: datetime) -> Row:
    """The row of money of ``payment`` applied (or held, ``kind``) for one invoice."""
    currency = payment["currency"]
    return {
        "tenant": payment["tenant"],
        "payment_id": payment["payment_id"],
        "invoice_id": applied.invoice_id,
        "account_id": payment["account_id"],
        "kind": kind,
        "amount_minor": to_minor(applied.amount, currency),
        "discount_minor": to_minor(applied.discount, currency),
        "reversed": False,
        "applied_at": now,
    }


def by_payment(applications: Iterable[Row]) -> dict[str, list[Row]]:
    """Applications grouped by payment id, each group oldest first (as given)."""
    grouped: dict[str, list[Row]] = {}
    for application in applications:
        grouped.setdefault(application["payment_id"], []).append(application)
    return grouped


@dataclass(frozen=True)
class StoredPayment:
    """A payment's row and its applications (allocations, credit uses, holds), oldest
    first: what a use case hands back for the API to show."""

    row: Row
    applications: Sequence[Row]


@dataclass
class Changes:
    """Rows a use case added or changed, written back with one statement per kind."""

    new_invoices: list[Row] = field(default_factory=list)
    new_payments: list[Row] = field(default_factory=list)
    new_applications: list[Row] = field(default_factory=list)
    invoices: list[Row] = field(default_factory=list)
    payments: list[Row] = field(default_factory=list)
    applications: list[Row] = field(default_factory=list)


async def write(session: AsyncSession, changes: Changes) -> None:
    """Insert the new rows and update the changed ones, one statement per table and kind."""
    await insert_rows(session, invoices, changes.new_invoices)
    await insert_rows(session, payments, changes.new_payments)
    await insert_rows(session, applications, changes.new_applications)
    await update_rows(session, invoices, changes.invoices, INVOICE_COLUMNS)
    await update_rows(session, payments, changes.payments, PAYMENT_COLUMNS)
    await update_rows(session, applications, changes.applications, APPLICATION_COLUMNS)


async def payments_by_id(session: AsyncSession, tenant: str, ids: Iterable[str]) -> dict[str, Row]:
    """Payments of ``tenant`` among ``ids``, by id (one query)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(payments).where(payments.c.tenant == tenant, payments.c.payment_id.in_(wanted))
    )
    return {r["payment_id"]: dict(r) for r in rows.mappings()}


async def account_invoices(
    session: AsyncSession, keys: Iterable[tuple[str, str]], named: Iterable[InvoiceKey] = ()
) -> dict[InvoiceKey, Row]:
    """The open invoices of the ``(tenant, account)`` keys, and the ``named`` ones
    whatever their state (one query)."""
    accounts = sorted(set(keys))
    names = sorted(set(named))
    if not accounts and not names:
        return {}
    conditions = []
    if accounts:
        conditions.append(
            and_(
                bulk.pairs_in(invoices.c.tenant, invoices.c.account_id, accounts),
                invoices.c.void.is_(False),
                invoices.c.amount_due_minor
                > invoices.c.paid_minor + invoices.c.discount_minor + invoices.c.credited_minor,
            )
        )
    if names:
        conditions.append(bulk.pairs_in(invoices.c.tenant, invoices.c.invoice_id, names))

    rows = await session.execute(select(invoices).where(or_(*conditions)))
    return {(r["tenant"], r["invoice_id"]): dict(r) for r in rows.mappings()}


async def applications_of(session: AsyncSession, keys: Iterable[tuple[str, str]]) -> list[Row]:
    """Every application of the ``(tenant, payment_id)`` keys, oldest first."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    rows = await session.execute(
        select(applications)
        .where(bulk.pairs_in(applications.c.tenant, applications.c.payment_id, wanted))
        .order_by(applications.c.seq)
    )
    return [dict(r) for r in rows.mappings()]


async def payments_with_credit(
    session: AsyncSession, accounts: Iterable[tuple[str, str]]
) -> list[Row]:
    """Payments of the ``(tenant, account)`` keys with money not applied yet, oldest
    received first (the order credit is used in)."""
    wanted = sorted(set(accounts))
    if not wanted:
        return []
    rows = await session.execute(
        select(payments)
        .where(
            bulk.pairs_in(payments.c.tenant, payments.c.account_id, wanted),
            (payments.c.credit_minor > 0) | (payments.c.held_minor > 0),
            payments.c.status != "reversed",
        )
        .order_by(payments.c.received_at, payments.c.seq)
    )
    return [dict(r) for r in rows.mappings()]


async def holds_for(
    session: AsyncSession, keys: Iterable[InvoiceKey]
) -> dict[InvoiceKey, list[Row]]:
    """Live holds naming the ``(tenant, invoice_id)`` keys, by invoice, oldest first."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    held = await session.execute(
        select(applications)
        .where(
            bulk.pairs_in(applications.c.tenant, applications.c.invoice_id, wanted),
            applications.c.kind == "held",
            applications.c.reversed.is_(False),
        )
        .order_by(applications.c.seq)
    )
    holds: dict[InvoiceKey, list[Row]] = {}
    for app in held.mappings():
        holds.setdefault((app["tenant"], app["invoice_id"]), []).append(dict(app))
    return holds


@dataclass(frozen=True)
class PaymentFilter:
    """Which payments a list shows: one account's, in one status (None: any)."""

    account_id: str | None = None
    status: str | None = None


async def payments_page(
    session: AsyncSession, tenant: str, only: PaymentFilter, after: int | None, limit: int
) -> list[Row]:
    """Payments of ``tenant`` after position ``after`` in the order they were recorded,
    filtered by ``only``: ``limit`` + 1 of them (``pagination.keyset``)."""
    query = select(payments).where(payments.c.tenant == tenant)
    if only.account_id is not None:
        query = query.where(payments.c.account_id == only.account_id)
    if only.status is not None:
        query = query.where(payments.c.status == only.status)
    rows = await session.execute(keyset(query, payments.c.seq, after, limit))
    return [dict(r) for r in rows.mappings().all()]


async def webhook_answer(
    session: AsyncSession, tenant: str, provider: str, event_id: str
) -> dict[str, Any] | None:
    """The answer given to a processor's event the first time, if it came before."""
    found = await session.execute(
        select(webhook_events.c.response).where(
            webhook_events.c.tenant == tenant,
            webhook_events.c.provider == provider,
            webhook_events.c.event_id == event_id,
        )
    )
    answer: dict[str, Any] | None = found.scalar_one_or_none()
    return answer


async def add_webhook_answer(
    session: AsyncSession,
    tenant: str,
    provider: str,
    event_id: str,
    answer: dict[str, Any],
    now: datetime,
) -> None:
    """Keep the answer to a processor's event, so a replay of it gets the same."""
    row = {
        "tenant": tenant,
        "provider": provider,
        "event_id": event_id,
        "response": answer,
        "created_at": now,
    }
    await insert_rows(session, webhook_events, [row])


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[Row]) -> None:
    """One INSERT for all ``rows`` (``unnest`` of one array per column on PostgreSQL)."""
    await bulk.insert_rows(session, table, rows)


async def update_rows(
    session: AsyncSession, table: Table, rows: Sequence[Row], columns: Sequence[str]
) -> None:
    """One UPDATE by ``seq`` for all ``rows``, writing ``columns`` (``UPDATE … FROM
    unnest`` on PostgreSQL: one statement, not one per row)."""
    await bulk.update_rows(session, table, rows, "seq", columns)


#: Columns a payment, an invoice or an application changes after it is stored.
PAYMENT_COLUMNS = (
    "credit_minor",
    "held_minor",
    "status",
    "reversed_at",
    "reversal_reason",
    "updated_at",
)
INVOICE_COLUMNS = ("paid_minor", "discount_minor", "credited_minor", "void", "settled_seen_at")
APPLICATION_COLUMNS = ("kind", "amount_minor", "discount_minor", "reversed", "applied_at")
