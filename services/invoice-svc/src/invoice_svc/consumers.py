"""invoice-svc's event handlers: payments move invoice balances.

``PaymentReceived`` allocations and ``CreditApplied`` (credit of an earlier payment
applied to an invoice that arrived later) both pay an invoice: the amount is paid,
the early-payment discount taken with it is credited. ``PaymentReversed`` gives back
both, for every allocation of the payment, whichever event brought it.

The payments subscription takes a partition's chunk at once (a batch handler):
it locks every account the chunk touches, loads the chunk's allocations and
invoices with one query each, folds the events through the rules in memory, in
partition order, and writes the changes back with one statement per kind.
Like every other writer it takes the account locks first, so a payment and an
invoice being created for it never miss each other, and an account's events
leave through the outbox in the order their transactions committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import (
    Allocation,
    CreditApplied,
    Envelope,
    Event,
    LateFeeAssessed,
    Money,
    PaymentReceived,
    PaymentReversed,
    topics,
)
from dunning_events.money import check_money, from_minor, to_minor
from dunning_runtime.app import Runtime
from dunning_runtime.consumer import Subscription
from dunning_runtime.errors import EventRejected
from dunning_runtime.locks import lock_accounts
from dunning_runtime.outbox import Outbox
from dunning_runtime.scope import envelope_of
from invoice_svc import domain, events, storage
from invoice_svc.commands import create_invoices, scope_for
from invoice_svc.models import InvoiceIn
from invoice_svc.settings import InvoiceSettings
from invoice_svc.storage import allocations, invoices
from invoice_svc.views import balance_of

Payment = PaymentReceived | PaymentReversed | CreditApplied
InvoiceKey = tuple[str, str]  # tenant, invoice_id
AllocationKey = tuple[str, str, str]  # tenant, payment_id, invoice_id

#: The invoice columns a payment can change, written back for every changed invoice.
_PAYMENT_COLUMNS = (
    "amount_paid_minor",
    "credited_minor",
    "status",
    "chase_pending",
    "settled_at",
    "overdue_notified_at",
    "updated_at",
)


@dataclass
class _Chunk:
    """The state a chunk of payments works on, loaded once and changed in memory."""

    invoices: dict[InvoiceKey, dict[str, Any]]
    allocations: dict[AllocationKey, dict[str, Any]]
    changed_invoices: set[InvoiceKey] = field(default_factory=set)
    new_allocations: list[AllocationKey] = field(default_factory=list)
    reversed_allocations: set[AllocationKey] = field(default_factory=set)


def _payments(envelopes: Sequence[Envelope]) -> list[tuple[Envelope, Payment]]:
    return [
        (e, e.data)
        for e in envelopes
        if isinstance(e.data, PaymentReceived | PaymentReversed | CreditApplied)
    ]


def _allocations(event: Payment) -> list[Allocation]:
    """What an event pays or undoes: a credit application is one more allocation."""
    if isinstance(event, CreditApplied):
        return [
            Allocation(invoice_id=event.invoice_id, amount=event.amount, discount=event.discount)
        ]
    return list(event.allocations)


async def _load(session: AsyncSession, payments: list[tuple[Envelope, Payment]]) -> _Chunk:
    """Lock the chunk's accounts, then load its allocations and invoices (one query each)."""
    payment_keys = sorted({(e.tenant, p.payment_id) for e, p in payments})
    recorded = await _allocations_of(session, payment_keys)
    named = {(e.tenant, a.invoice_id) for e, p in payments for a in _allocations(p)}
    named |= {(t, i) for t, _, i in recorded}
    accounts = {(e.tenant, p.account_id) for e, p in payments}
    accounts |= {
        (row["tenant"], row["account_id"])
        for row in (await _invoices(session, named, lock=False)).values()
    }
    await lock_accounts(session, accounts)
    # Read again under the locks: what was read before only chose the locks.
    recorded = await _allocations_of(session, payment_keys)
    named |= {(t, i) for t, _, i in recorded}
    return _Chunk(invoices=await _invoices(session, named, lock=True), allocations=recorded)


async def _allocations_of(
    session: AsyncSession, payment_keys: list[tuple[str, str]]
) -> dict[AllocationKey, dict[str, Any]]:
    if not payment_keys:
        return {}
    rows = await session.execute(
        select(allocations).where(
            tuple_(allocations.c.tenant, allocations.c.payment_id).in_(sorted(payment_keys))
        )
    )
    return {(r["tenant"], r["payment_id"], r["invoice_id"]): dict(r) for r in rows.mappings()}


async def _invoices(
    session: AsyncSession, keys: set[InvoiceKey], *, lock: bool
) -> dict[InvoiceKey, dict[str, Any]]:
    if not keys:
        return {}
    query = select(invoices).where(
        tuple_(invoices.c.tenant, invoices.c.invoice_id).in_(sorted(keys))
    )
    if lock:
        query = query.with_for_update()
    rows = await session.execute(query)
    return {(r["tenant"], r["invoice_id"]): dict(r) for r in rows.mappings()}


def _received(
    chunk: _Chunk, envelope: Envelope, event: PaymentReceived | CreditApplied
) -> list[Event]:
    """Apply each allocation to its invoice (amount paid, discount credited); one whose
    invoice is unknown waits for it, one in another currency is kept unapplied."""
    out: list[Event] = []
    tenant, now = envelope.tenant, envelope.time
    for allocation in _allocations(event):
        key = (tenant, event.payment_id, allocation.invoice_id)
        if key in chunk.allocations:
            continue  # already recorded (a redelivered payment), or reversed first
        amount = allocation.amount
        discount = (
            allocation.discount.amount if allocation.discount else from_minor(0, amount.currency)
        )
        try:
            check_money(amount.amount, amount.currency)
            check_money(discount, amount.currency)
        except ValueError as exc:
            raise EventRejected(
                f"allocation to {allocation.invoice_id}: {exc}", envelope.id
            ) from exc
        row = chunk.invoices.get((tenant, allocation.invoice_id))
        applies = domain.payment_applies(row["currency"] if row else None, amount.currency)
        if row is None or not applies:
            chunk.allocations[key] = _allocation_row(key, amount, applied=False, reversed_=False)
            chunk.new_allocations.append(key)
            continue
        before = balance_of(row)
        after = domain.apply_payment(before, amount.amount, discount)
        granted = after.credited - before.credited
        chunk.allocations[key] = _allocation_row(
            key, amount, applied=True, reversed_=False, discount=granted
        )
        chunk.new_allocations.append(key)
        row.update(storage.changed_values(row, now, after))
        chunk.changed_invoices.add((tenant, allocation.invoice_id))
        if domain.settles(before, after):
            out.append(events.settled(row, now))
    return out


def _allocation_row(
    key: tuple[str, str, str],
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


def _reversed(chunk: _Chunk, envelope: Envelope, event: PaymentReversed) -> None:
    """Undo the payment's allocations; an invoice it had settled reopens and is chased again."""
    tenant, now = envelope.tenant, envelope.time
    recorded = [k for k in chunk.allocations if k[:2] == (tenant, event.payment_id)]
    # An allocation the reversal overtook is remembered, so it is never applied.
    for allocation in event.allocations:
        key = (tenant, event.payment_id, allocation.invoice_id)
        if key in chunk.allocations:
            continue
        chunk.allocations[key] = _allocation_row(
            key, allocation.amount, applied=False, reversed_=True
        )
        chunk.new_allocations.append(key)
    for key in recorded:
        allocated = chunk.allocations[key]
        if allocated["reversed"]:
            continue
        allocated["reversed"] = True
        if key not in chunk.new_allocations:
            chunk.reversed_allocations.add(key)
        row = chunk.invoices.get((tenant, key[2]))
        if not allocated["applied"] or row is None:
            continue
        before = balance_of(row)
        after = domain.reverse_payment(
            before,
            from_minor(allocated["amount_minor"], row["currency"]),
            from_minor(allocated.get("discount_minor") or 0, row["currency"]),
        )
        # A reopened invoice is owed an InvoiceOverdue again once it is past due.
        changes = {"overdue_notified_at": None} if domain.reopens(before, after) else {}
        row.update(storage.changed_values(row, now, after, **changes))
        chunk.changed_invoices.add((tenant, key[2]))


async def _write_back(session: AsyncSession, chunk: _Chunk) -> None:
    """One statement per kind of change, each run for all the rows it concerns."""
    if chunk.new_allocations:
        await session.execute(
            insert(allocations), [chunk.allocations[k] for k in chunk.new_allocations]
        )
    if chunk.reversed_allocations:
        await session.execute(
            update(allocations)
            .where(
                allocations.c.tenant == bindparam("k_tenant"),
                allocations.c.payment_id == bindparam("k_payment"),
                allocations.c.invoice_id == bindparam("k_invoice"),
            )
            .values(reversed=True),
            [
                {"k_tenant": t, "k_payment": p, "k_invoice": i}
                for t, p, i in sorted(chunk.reversed_allocations)
            ],
        )
    if chunk.changed_invoices:
        await session.execute(
            update(invoices)
            .where(invoices.c.seq == bindparam("k_seq"))
            .values({c: bindparam(f"v_{c}") for c in _PAYMENT_COLUMNS}),
            [
                {"k_seq": row["seq"], **{f"v_{c}": row[c] for c in _PAYMENT_COLUMNS}}
                for row in (chunk.invoices[k] for k in sorted(chunk.changed_invoices))
            ],
        )


async def apply_payments(
    session: AsyncSession, outbox: Outbox, envelopes: Sequence[Envelope]
) -> None:
    """Apply a chunk of ``PaymentReceived``, ``CreditApplied`` and ``PaymentReversed``
    events, in order, each at its own time (a redelivery must produce the same state)."""
    payments = _payments(envelopes)
    if not payments:
        return
    chunk = await _load(session, payments)
    staged = []
    for envelope, event in payments:
        scope = scope_for(envelope.tenant, envelope.time, outbox)
        if isinstance(event, PaymentReversed):
            _reversed(chunk, envelope, event)
        else:
            staged += [envelope_of(scope, e) for e in _received(chunk, envelope, event)]
    await _write_back(session, chunk)
    if staged:
        await outbox.add(session, *staged)


def payments(runtime: Runtime) -> Subscription:
    """Apply ``PaymentReceived``, ``CreditApplied`` and ``PaymentReversed`` to the invoices
    they name."""

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        await apply_payments(session, runtime.outbox, envelopes)

    return Subscription("invoice-svc", (topics.PAYMENTS,), batch_handler=handle)


# -- late fees from dunning-svc ------------------------------------------------------------


def fee_invoice(fee: LateFeeAssessed) -> InvoiceIn:
    """The fee invoice a ``LateFeeAssessed`` asks for: kind ``fee`` (in its metadata), due
    on the day it was charged, on the account the fee is for, chased like any invoice."""
    amount = fee.amount
    return InvoiceIn(
        invoice_id=fee.fee_invoice_id,
        account_id=fee.account_id,
        account_name=fee.account_name,
        contact=fee.contact,
        currency=amount.currency,
        amount_due=amount.amount,
        issue_date=fee.assessed_on,
        due_date=fee.assessed_on,
        segment=fee.segment,
        timezone=fee.timezone,
        locale=fee.locale,
        lines=[
            {
                "description": f"Late fee ({fee.stage}) on {fee.invoice_id}",
                "quantity": "1",
                "unit_price": str(amount.amount),
                "amount": str(amount.amount),
            }
        ],
        metadata={"kind": "fee", "fee_for": fee.invoice_id, "stage": fee.stage},
    )


async def create_fee_invoices(
    session: AsyncSession, runtime: Runtime, envelopes: Sequence[Envelope]
) -> None:
    """Turn each ``LateFeeAssessed`` of the chunk into its fee invoice (one transaction;
    a fee seen before is a replay of the same invoice and changes nothing)."""
    settings = runtime.settings
    assert isinstance(settings, InvoiceSettings)  # ServiceSpec.settings_type
    for envelope in envelopes:
        if not isinstance(envelope.data, LateFeeAssessed):
            continue
        try:
            item = fee_invoice(envelope.data)
        except ValueError as exc:
            raise EventRejected(f"the fee cannot be an invoice: {exc}", envelope.id) from exc
        scope = scope_for(envelope.tenant, envelope.time, runtime.outbox)
        [created] = await create_invoices(
            session, scope, [item], settings.grace_days_for(envelope.tenant)
        )
        if created.problem is not None and created.status != 409:
            raise EventRejected(f"fee invoice refused: {created.problem.detail}", envelope.id)


def fees(runtime: Runtime) -> Subscription:
    """Late fees charged by dunning-svc become fee invoices."""

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        await create_fee_invoices(session, runtime, envelopes)

    return Subscription("invoice-svc-fees", (topics.DUNNING_EVENTS,), batch_handler=handle)
