"""invoice-svc's state changes: load rows, apply the rules, store, emit events.

Each function runs inside the caller's transaction and writes its events to
the outbox in that same transaction, so a change and its events commit
together. HTTP routes (``api``), event handlers (``consumers``) and the
scheduler (``jobs``) all come through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import (
    Allocation,
    Event,
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceSettled,
    InvoiceVoided,
    Money,
    PaymentReceived,
    PaymentReversed,
    Terms,
    make_envelope,
)
from dunning_events.money import check_places
from dunning_runtime.outbox import Outbox
from dunning_runtime.problems import Problem
from invoice_svc import domain
from invoice_svc.domain import Balance, InvoiceStatus
from invoice_svc.models import DisputeOut, InvoiceIn, InvoiceOut
from invoice_svc.storage import (
    allocations,
    from_minor,
    get_invoice,
    get_invoices,
    invoices,
    to_minor,
    utc,
)

SOURCE = "/invoice-svc"


@dataclass(frozen=True)
class Scope:
    """Who is acting and when: every command runs for one tenant at one instant."""

    tenant: str
    now: datetime
    outbox: Outbox


async def emit(session: AsyncSession, scope: Scope, *events: Event) -> None:
    """Stage events for the outbox in the caller's transaction."""
    await scope.outbox.add(
        session,
        *(make_envelope(e, tenant=scope.tenant, source=SOURCE, time=scope.now) for e in events),
    )


# -- reading -----------------------------------------------------------------


def money(minor: int, currency: str) -> Money:
    """Minor units as ``Money``."""
    return Money(amount=from_minor(minor, currency), currency=currency)


def balance_of(row: RowMapping | dict[str, Any]) -> Balance:
    """The money side of a stored invoice."""
    currency = row["currency"]
    return Balance(
        amount_due=from_minor(row["amount_due_minor"], currency),
        amount_paid=from_minor(row["amount_paid_minor"], currency),
        credited=from_minor(row["credited_minor"], currency),
        voided=row["status"] == InvoiceStatus.VOID,
    )


def invoice_view(row: RowMapping | dict[str, Any], now: datetime) -> InvoiceOut:
    """An invoice as the API shows it, ``days_past_due`` as of ``now``."""
    request = row["request"]
    currency = row["currency"]
    balance = balance_of(row)
    dispute = None
    if row["disputed"]:
        dispute = DisputeOut(
            reason=row["dispute_reason"] or "",
            amount=from_minor(row["disputed_minor"] or 0, currency),
            opened_at=utc(row["disputed_at"]) or now,
        )
    overdue_at = utc(row["overdue_at"])
    assert overdue_at is not None
    return InvoiceOut.model_validate(
        {
            **{
                k: request.get(k)
                for k in ("contact", "terms", "early_payment_discount", "late_fee")
            },
            "lines": request.get("lines", []),
            "metadata": request.get("metadata", {}),
            "invoice_id": row["invoice_id"],
            "account_id": row["account_id"],
            "account_name": row["account_name"],
            "currency": currency,
            "amount_due": balance.amount_due,
            "amount_paid": balance.amount_paid,
            "credited": balance.credited,
            "balance": balance.balance,
            "status": row["status"],
            "disputed": row["disputed"],
            "dispute": dispute,
            "days_past_due": domain.days_past_due(row["due_date"], row["timezone"], now),
            "overdue_since": domain.local_date(overdue_at, row["timezone"]),
            "issue_date": row["issue_date"],
            "due_date": row["due_date"],
            "segment": row["segment"],
            "timezone": row["timezone"],
            "locale": row["locale"],
            "void_reason": row["void_reason"],
            "voided_at": utc(row["voided_at"]),
            "settled_at": utc(row["settled_at"]),
            "created_at": utc(row["created_at"]),
            "updated_at": utc(row["updated_at"]),
        }
    )


async def load(
    session: AsyncSession, tenant: str, invoice_id: str, *, lock: bool = False
) -> RowMapping:
    """An invoice of the tenant, or a 404 (another tenant's invoice is also a 404)."""
    row = await get_invoice(session, tenant, invoice_id, for_update=lock)
    if row is None:
        raise Problem(404, f"There is no invoice {invoice_id!r}.", type_="invoice-not-found")
    return row


# -- creating ----------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """The outcome of posting one invoice."""

    status: int  # 201 new, 200 the same invoice again, 409 same id with other content
    invoice: InvoiceOut | None = None
    problem: Problem | None = None


def _issued(item: InvoiceIn) -> InvoiceIssued:
    terms = Terms(
        net_days=item.terms.net_days if item.terms else 30,
        early_payment_discount=item.early_payment_discount,
        late_fee=item.late_fee,
    )
    return InvoiceIssued(
        account_id=item.account_id,
        invoice_id=item.invoice_id,
        account_name=item.account_name,
        contact=item.contact,
        amount_due=Money(amount=item.amount_due, currency=item.currency),
        issue_date=item.issue_date,
        due_date=item.due_date,
        segment=item.segment,
        timezone=item.timezone,
        locale=item.locale,
        terms=terms,
        lines=list(item.lines),
        metadata=item.metadata,
    )


def _conflict(invoice_id: str, fields: list[str]) -> Problem:
    return Problem(
        409,
        f"Invoice {invoice_id!r} was already accepted with other content: {', '.join(fields)}.",
        type_="invoice-conflict",
        errors=[
            {"field": f"body.{f}", "message": "differs from the invoice already accepted"}
            for f in fields
        ],
    )


async def create_invoices(
    session: AsyncSession, scope: Scope, items: list[InvoiceIn], grace_days: int
) -> list[Created]:
    """Accept invoices in one transaction; an id seen before is a replay (200) or a 409."""
    existing = await get_invoices(session, scope.tenant, [i.invoice_id for i in items])
    accepted: dict[str, dict[str, Any]] = {k: dict(v) for k, v in existing.items()}
    pending = await _pending_allocations(
        session, scope.tenant, [i.invoice_id for i in items if i.invoice_id not in existing]
    )
    results: list[Created] = []
    new_rows: list[dict[str, Any]] = []
    events: list[Event] = []
    for item in items:
        body = item.model_dump(mode="json")
        if item.invoice_id in accepted:
            row = accepted[item.invoice_id]
            fields = domain.changed_fields(row["request"], body)
            if fields:
                results.append(Created(409, problem=_conflict(item.invoice_id, fields)))
            else:
                results.append(Created(200, invoice_view(row, scope.now)))
            continue
        row = _new_row(item, body, scope, grace_days, pending.get(item.invoice_id, []))
        accepted[item.invoice_id] = row
        new_rows.append(row)
        events.append(_issued(item))
        if row["status"] == InvoiceStatus.PAID:
            events.append(_settled(row, scope.now))
        results.append(Created(201, invoice_view(row, scope.now)))
    if new_rows:
        await session.execute(insert(invoices), new_rows)
        if pending:
            await session.execute(
                update(allocations)
                .where(allocations.c.tenant == scope.tenant)
                .where(allocations.c.invoice_id.in_(list(pending)))
                .where(allocations.c.reversed.is_(False))
                .values(applied=True)
            )
        await emit(session, scope, *events)
    return results


async def _pending_allocations(
    session: AsyncSession, tenant: str, invoice_ids: list[str]
) -> dict[str, list[int]]:
    """Payments allocated to these invoices before the invoices arrived (minor units)."""
    if not invoice_ids:
        return {}
    rows = await session.execute(
        select(allocations.c.invoice_id, allocations.c.amount_minor).where(
            allocations.c.tenant == tenant,
            allocations.c.invoice_id.in_(invoice_ids),
            allocations.c.applied.is_(False),
            allocations.c.reversed.is_(False),
        )
    )
    found: dict[str, list[int]] = {}
    for invoice_id, amount in rows:
        found.setdefault(invoice_id, []).append(int(amount))
    return found


def _new_row(
    item: InvoiceIn, body: dict[str, Any], scope: Scope, grace_days: int, paid: list[int]
) -> dict[str, Any]:
    currency = item.currency
    balance = Balance(amount_due=item.amount_due, amount_paid=from_minor(sum(paid), currency))
    status = balance.status
    return {
        "tenant": scope.tenant,
        "invoice_id": item.invoice_id,
        "account_id": item.account_id,
        "account_name": item.account_name,
        "currency": currency,
        "amount_due_minor": to_minor(item.amount_due, currency),
        "amount_paid_minor": sum(paid),
        "credited_minor": 0,
        "status": status.value,
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
        "settled_at": scope.now if status == InvoiceStatus.PAID else None,
        "overdue_at": domain.overdue_at(item.due_date, item.timezone, grace_days),
        "overdue_notified_at": None,
        "chase_pending": domain.is_chased(status, disputed=False),
        "request": body,
        "created_at": scope.now,
        "updated_at": scope.now,
    }


def _settled(row: RowMapping | dict[str, Any], now: datetime) -> InvoiceSettled:
    return InvoiceSettled(
        account_id=row["account_id"],
        invoice_id=row["invoice_id"],
        amount_paid=money(row["amount_paid_minor"], row["currency"]),
        settled_at=now,
    )


# -- changing ----------------------------------------------------------------


async def _store(
    session: AsyncSession, row: RowMapping, scope: Scope, balance: Balance, **changes: Any
) -> dict[str, Any]:
    """Write a new balance (and other columns) back, keeping status and chase flag in step."""
    currency = row["currency"]
    status = balance.status
    disputed = changes.get("disputed", row["disputed"])
    notified = changes.get("overdue_notified_at", row["overdue_notified_at"])
    values = {
        "amount_paid_minor": to_minor(balance.amount_paid, currency),
        "credited_minor": to_minor(balance.credited, currency),
        "status": status.value,
        "chase_pending": domain.is_chased(status, disputed) and notified is None,
        "updated_at": scope.now,
        **changes,
    }
    if status == InvoiceStatus.PAID and row["status"] != InvoiceStatus.PAID:
        values["settled_at"] = scope.now
    elif status != InvoiceStatus.PAID and row["status"] == InvoiceStatus.PAID:
        values["settled_at"] = None
    await session.execute(update(invoices).where(invoices.c.seq == row["seq"]).values(**values))
    return {**dict(row), **values}


async def void_invoice(
    session: AsyncSession, scope: Scope, invoice_id: str, reason: str
) -> InvoiceOut:
    """Void an unpaid invoice; voiding it again changes nothing."""
    row = await load(session, scope.tenant, invoice_id, lock=True)
    if row["status"] == InvoiceStatus.VOID:
        return invoice_view(row, scope.now)
    if row["amount_paid_minor"] > 0:
        raise Problem(
            409,
            f"Invoice {invoice_id!r} has payments of "
            f"{from_minor(row['amount_paid_minor'], row['currency'])} {row['currency']}; "
            "reverse them or issue a credit note before voiding it.",
            type_="invoice-has-payments",
        )
    balance = balance_of(row)
    stored = await _store(
        session,
        row,
        scope,
        Balance(balance.amount_due, balance.amount_paid, balance.credited, voided=True),
        void_reason=reason,
        voided_at=scope.now,
    )
    await emit(
        session,
        scope,
        InvoiceVoided(
            account_id=row["account_id"],
            invoice_id=invoice_id,
            reason=reason,
            balance_voided=Money(amount=balance.balance, currency=row["currency"]),
        ),
    )
    return invoice_view(stored, scope.now)


async def dispute_invoice(
    session: AsyncSession, scope: Scope, invoice_id: str, reason: str, amount: Decimal | None
) -> InvoiceOut:
    """Open a dispute over ``amount`` (default: the whole balance); chasing it pauses."""
    row = await load(session, scope.tenant, invoice_id, lock=True)
    status = InvoiceStatus(row["status"])
    if status in (InvoiceStatus.VOID, InvoiceStatus.PAID):
        raise Problem(
            409,
            f"Invoice {invoice_id!r} is {status.value}: only unpaid invoices can be disputed.",
            type_=f"invoice-{status.value}",
        )
    if row["disputed"]:
        raise Problem(409, f"Invoice {invoice_id!r} is already disputed.", type_="invoice-disputed")
    balance = balance_of(row)
    currency = row["currency"]
    disputed = balance.balance if amount is None else amount
    if disputed > balance.balance:
        raise Problem(
            422,
            f"The disputed amount {disputed} exceeds the balance {balance.balance} {currency}.",
            type_="validation-error",
            errors=[{"field": "body.amount", "message": "exceeds the invoice's balance"}],
        )
    try:
        check_places(disputed, currency)
    except ValueError as exc:
        raise Problem(
            422,
            f"{exc}.",
            type_="validation-error",
            errors=[{"field": "body.amount", "message": str(exc)}],
        ) from None
    disputed_minor = to_minor(disputed, currency)
    stored = await _store(
        session,
        row,
        scope,
        balance,
        disputed=True,
        dispute_reason=reason,
        disputed_minor=disputed_minor,
        disputed_at=scope.now,
    )
    await emit(
        session,
        scope,
        InvoiceDisputed(
            account_id=row["account_id"],
            invoice_id=invoice_id,
            reason=reason,
            disputed_amount=Money(amount=from_minor(disputed_minor, currency), currency=currency),
        ),
    )
    return invoice_view(stored, scope.now)


async def resolve_dispute(
    session: AsyncSession, scope: Scope, invoice_id: str, resolution: str
) -> InvoiceOut:
    """Close the dispute: ``upheld`` credits the disputed amount, ``rejected`` chases again."""
    row = await load(session, scope.tenant, invoice_id, lock=True)
    if not row["disputed"]:
        raise Problem(409, f"Invoice {invoice_id!r} has no open dispute.", type_="no-open-dispute")
    currency = row["currency"]
    balance = balance_of(row)
    credited = None
    if resolution == "upheld":
        before = balance.credited
        balance = domain.credit(balance, from_minor(row["disputed_minor"] or 0, currency))
        credited = Money(amount=balance.credited - before, currency=currency)
    stored = await _store(
        session,
        row,
        scope,
        balance,
        disputed=False,
        dispute_reason=None,
        disputed_minor=None,
        disputed_at=None,
    )
    events: list[Event] = [
        InvoiceDisputeResolved(
            account_id=row["account_id"],
            invoice_id=invoice_id,
            resolution=resolution,
            credited_amount=credited,
            balance=Money(amount=balance.balance, currency=currency),
        )
    ]
    if stored["status"] == InvoiceStatus.PAID:
        events.append(_settled(stored, scope.now))
    await emit(session, scope, *events)
    return invoice_view(stored, scope.now)


# -- payments from the bus ---------------------------------------------------


async def _record_allocation(
    session: AsyncSession,
    tenant: str,
    payment_id: str,
    allocation: Allocation,
    *,
    applied: bool,
    reversed_: bool,
) -> None:
    """Remember one allocation of a payment, so it is applied once and can be undone."""
    await session.execute(
        insert(allocations).values(
            tenant=tenant,
            payment_id=payment_id,
            invoice_id=allocation.invoice_id,
            currency=allocation.amount.currency,
            amount_minor=to_minor(allocation.amount.amount, allocation.amount.currency),
            applied=applied,
            reversed=reversed_,
        )
    )


async def apply_payment_received(
    session: AsyncSession, scope: Scope, event: PaymentReceived
) -> None:
    """Apply each allocation to its invoice; one whose invoice is unknown waits for it."""
    for allocation in event.allocations:
        key = (
            (allocations.c.tenant == scope.tenant)
            & (allocations.c.payment_id == event.payment_id)
            & (allocations.c.invoice_id == allocation.invoice_id)
        )
        if (await session.execute(select(allocations.c.applied).where(key))).first() is not None:
            continue  # this allocation was already recorded (or reversed first)
        amount = allocation.amount
        row = await get_invoice(session, scope.tenant, allocation.invoice_id, for_update=True)
        applies = row is not None and row["currency"] == amount.currency
        await _record_allocation(
            session, scope.tenant, event.payment_id, allocation, applied=applies, reversed_=False
        )
        if row is None or not applies:
            continue
        stored = await _store(
            session, row, scope, domain.apply_payment(balance_of(row), amount.amount)
        )
        if stored["status"] == InvoiceStatus.PAID and row["status"] != InvoiceStatus.PAID:
            await emit(session, scope, _settled(stored, scope.now))


async def apply_payment_reversed(
    session: AsyncSession, scope: Scope, event: PaymentReversed
) -> None:
    """Undo the payment's allocations; an invoice it had settled reopens and is chased again."""
    recorded = (
        (
            await session.execute(
                select(allocations).where(
                    allocations.c.tenant == scope.tenant,
                    allocations.c.payment_id == event.payment_id,
                )
            )
        )
        .mappings()
        .all()
    )
    if not recorded:
        # The reversal overtook the payment: remember it so the payment is never applied.
        for allocation in event.allocations:
            await _record_allocation(
                session, scope.tenant, event.payment_id, allocation, applied=False, reversed_=True
            )
        return
    for recorded_row in recorded:
        if recorded_row["reversed"]:
            continue
        await session.execute(
            update(allocations)
            .where(
                allocations.c.tenant == scope.tenant,
                allocations.c.payment_id == event.payment_id,
                allocations.c.invoice_id == recorded_row["invoice_id"],
            )
            .values(reversed=True)
        )
        if not recorded_row["applied"]:
            continue
        row = await get_invoice(session, scope.tenant, recorded_row["invoice_id"], for_update=True)
        if row is None:
            continue
        amount = from_minor(recorded_row["amount_minor"], row["currency"])
        reopened = row["status"] == InvoiceStatus.PAID
        changes: dict[str, Any] = {}
        if reopened:
            # A reopened invoice is owed an InvoiceOverdue again once it is past due.
            changes["overdue_notified_at"] = None
        await _store(
            session, row, scope, domain.reverse_payment(balance_of(row), amount), **changes
        )


# -- overdue detection -------------------------------------------------------


async def detect_overdue_batch(
    session: AsyncSession, now: datetime, outbox: Outbox, batch_size: int
) -> int:
    """Publish ``InvoiceOverdue`` for up to ``batch_size`` invoices of any tenant due at ``now``.

    Reads through the (chase_pending, overdue_at) index, so only due invoices are
    touched; each is marked so it is never announced twice. On PostgreSQL
    ``SKIP LOCKED`` lets several instances share the work.
    """
    rows = (
        (
            await session.execute(
                select(invoices)
                .where(invoices.c.chase_pending.is_(True), invoices.c.overdue_at <= now)
                .order_by(invoices.c.overdue_at, invoices.c.seq)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            )
        )
        .mappings()
        .all()
    )
    if not rows:
        return 0
    await session.execute(
        update(invoices)
        .where(invoices.c.seq.in_([r["seq"] for r in rows]))
        .values(chase_pending=False, overdue_notified_at=now)
    )
    by_tenant: dict[str, list[Event]] = {}
    for row in rows:
        overdue_at = utc(row["overdue_at"])
        assert overdue_at is not None
        by_tenant.setdefault(row["tenant"], []).append(
            InvoiceOverdue(
                account_id=row["account_id"],
                invoice_id=row["invoice_id"],
                balance=Money(amount=balance_of(row).balance, currency=row["currency"]),
                due_date=row["due_date"],
                overdue_since=domain.local_date(overdue_at, row["timezone"]),
                days_past_due=domain.days_past_due(row["due_date"], row["timezone"], now),
            )
        )
    for tenant, events in by_tenant.items():
        await emit(session, Scope(tenant, now, outbox), *events)
    return len(rows)
