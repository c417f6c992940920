"""Apply payments to invoices: ``PaymentReceived``, ``CreditApplied`` and ``PaymentReversed``.

``PaymentReceived`` allocations and ``CreditApplied`` (credit of an earlier payment
applied to an invoice that arrived later) both pay an invoice: the amount is paid,
the early-payment discount taken with it is credited. ``PaymentReversed`` gives back
both, for every allocation of the payment, whichever event brought it.

A partition's chunk is applied at once: every account the chunk touches is locked,
the chunk's allocations and invoices are loaded with one query each, the events are
folded through the rules in memory, in partition order, and the changes are written
back with one statement per kind. Like every other writer it takes the account locks
first, so a payment and an invoice being created for it never miss each other, and
an account's events leave through the outbox in the order their transactions
committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import (
    Allocation,
    CreditApplied,
    Envelope,
    Event,
    PaymentReceived,
    PaymentReversed,
)
from dunning_events.money import check_money, from_minor
from dunning_runtime.errors import EventRejected
from dunning_runtime.locks import lock_accounts
from dunning_runtime.outbox import Outbox
from dunning_runtime.scope import Scope, envelope_of
from invoice_svc import NAME, domain, events, storage
from invoice_svc.commands.invoices import rewritten
from invoice_svc.storage import AllocationKey, InvoiceKey, balance_of

Payment = PaymentReceived | PaymentReversed | CreditApplied


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
    payment_keys = {(e.tenant, p.payment_id) for e, p in payments}
    recorded = await storage.allocations_of_payments(session, payment_keys)
    named = {(e.tenant, a.invoice_id) for e, p in payments for a in _allocations(p)}
    named |= {(t, i) for t, _, i in recorded}
    accounts = {(e.tenant, p.account_id) for e, p in payments}
    accounts |= {
        (row["tenant"], row["account_id"])
        for row in (await storage.invoices_by_key(session, named, lock=False)).values()
    }
    await lock_accounts(session, accounts)
    # Read again under the locks: what was read before only chose the locks.
    recorded = await storage.allocations_of_payments(session, payment_keys)
    named |= {(t, i) for t, _, i in recorded}
    return _Chunk(
        invoices=await storage.invoices_by_key(session, named, lock=True), allocations=recorded
    )


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
        chunk.new_allocations.append(key)
        if row is None or not applies:
            chunk.allocations[key] = storage.allocation_row(
                key, amount, applied=False, reversed_=False
            )
            continue
        before = balance_of(row)
        after = domain.apply_payment(before, amount.amount, discount)
        granted = after.credited - before.credited
        chunk.allocations[key] = storage.allocation_row(
            key, amount, applied=True, reversed_=False, discount=granted
        )
        row.update(rewritten(row, now, after))
        chunk.changed_invoices.add((tenant, allocation.invoice_id))
        if domain.settles(before, after):
            out.append(events.settled(row, now))
    return out


def _reversed(chunk: _Chunk, envelope: Envelope, event: PaymentReversed) -> None:
    """Undo the payment's allocations; an invoice it had settled reopens and is chased again."""
    tenant, now = envelope.tenant, envelope.time
    recorded = [k for k in chunk.allocations if k[:2] == (tenant, event.payment_id)]
    # An allocation the reversal overtook is remembered, so it is never applied.
    for allocation in event.allocations:
        key = (tenant, event.payment_id, allocation.invoice_id)
        if key in chunk.allocations:
            continue
        chunk.allocations[key] = storage.allocation_row(
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
        row.update(rewritten(row, now, after, **changes))
        chunk.changed_invoices.add((tenant, key[2]))


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
        scope = Scope.of(NAME, envelope.tenant, envelope.time, outbox)
        if isinstance(event, PaymentReversed):
            _reversed(chunk, envelope, event)
        else:
            staged += [envelope_of(scope, e) for e in _received(chunk, envelope, event)]
    await storage.write_payments(
        session,
        [chunk.allocations[k] for k in chunk.new_allocations],
        chunk.reversed_allocations,
        [chunk.invoices[k] for k in sorted(chunk.changed_invoices)],
    )
    if staged:
        await outbox.add(session, *staged)
