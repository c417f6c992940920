"""invoice-svc's tables and the queries on them.

Amounts are stored as integers of the currency's minor unit (cents), so both
SQLite and PostgreSQL keep them exact. ``chase_pending`` + ``overdue_at`` carry
an index that lets overdue detection read only the invoices that are due.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

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
    select,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events.money import minor_units

metadata = MetaData()
_Seq = BigInteger().with_variant(Integer(), "sqlite")

invoices = Table(
    "invoices",
    metadata,
    # seq orders pages for cursors; (tenant, invoice_id) is the identity.
    Column("seq", _Seq, primary_key=True, autoincrement=True),
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
    Column("applied", Boolean, nullable=False),
    Column("reversed", Boolean, nullable=False, default=False),
    Index("ix_allocations_invoice", "tenant", "invoice_id"),
)


def to_minor(amount: Decimal, currency: str) -> int:
    """``Decimal("12.34")`` EUR as ``1234``."""
    return int(amount.scaleb(minor_units(currency)))


def from_minor(minor: int, currency: str) -> Decimal:
    """``1234`` EUR as ``Decimal("12.34")``."""
    places = minor_units(currency)
    return (Decimal(minor).scaleb(-places)).quantize(Decimal(1).scaleb(-places))


async def get_invoice(
    session: AsyncSession, tenant: str, invoice_id: str, *, for_update: bool = False
) -> RowMapping | None:
    """One invoice of ``tenant``; ``for_update`` locks the row until the transaction ends."""
    query = select(invoices).where(invoices.c.tenant == tenant, invoices.c.invoice_id == invoice_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).mappings().first()


async def get_invoices(session: AsyncSession, tenant: str, ids: list[str]) -> dict[str, RowMapping]:
    """Invoices of ``tenant`` among ``ids``, by id (one query for a whole batch)."""
    if not ids:
        return {}
    rows = await session.execute(
        select(invoices).where(invoices.c.tenant == tenant, invoices.c.invoice_id.in_(ids))
    )
    return {row["invoice_id"]: row for row in rows.mappings()}


def utc(instant: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; every stored instant is UTC."""
    if instant is None or instant.tzinfo is not None:
        return instant
    return instant.replace(tzinfo=UTC)
