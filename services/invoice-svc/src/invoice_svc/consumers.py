"""invoice-svc's event handlers: payments move invoice balances.

Each handler locks the account first, like every other writer, so a payment and
an invoice being created for it never miss each other, and one account's events
leave through the outbox in the order their transactions committed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, PaymentReceived, PaymentReversed, topics
from dunning_events.money import from_minor
from dunning_runtime.app import Runtime
from dunning_runtime.consumer import Subscription
from dunning_runtime.locks import lock_accounts
from dunning_runtime.scope import Scope, emit
from invoice_svc import domain, events, storage
from invoice_svc.commands import scope_for
from invoice_svc.views import balance_of


async def _lock_for(
    session: AsyncSession, tenant: str, account_id: str, invoice_ids: list[str]
) -> None:
    # The event's account, and the accounts of the invoices it names (a payment may
    # be allocated to another account's invoice), in the one lock order.
    accounts = await storage.account_of_invoices(session, tenant, invoice_ids)
    await lock_accounts(session, [(tenant, a) for a in {account_id, *accounts.values()}])


async def apply_payment_received(
    session: AsyncSession, scope: Scope, event: PaymentReceived
) -> None:
    """Apply each allocation to its invoice; one whose invoice is unknown waits for it, one
    in another currency is kept unapplied."""
    invoice_ids = [a.invoice_id for a in event.allocations]
    await _lock_for(session, scope.tenant, event.account_id, invoice_ids)
    recorded = {
        r["invoice_id"]
        for r in await storage.allocations_of(session, scope.tenant, event.payment_id)
    }
    rows = await storage.get_invoices(session, scope.tenant, invoice_ids, for_update=True)
    for allocation in event.allocations:
        if allocation.invoice_id in recorded:
            continue  # this allocation was already recorded (or reversed first)
        recorded.add(allocation.invoice_id)
        amount = allocation.amount
        row = rows.get(allocation.invoice_id)
        applies = domain.payment_applies(row["currency"] if row else None, amount.currency)
        await storage.record_allocation(
            session, scope.tenant, event.payment_id, allocation, applied=applies, reversed_=False
        )
        if row is None or not applies:
            continue
        before = balance_of(row)
        after = domain.apply_payment(before, amount.amount)
        stored = await storage.store(session, row, scope.now, after)
        rows[allocation.invoice_id] = stored  # type: ignore[assignment]
        if domain.settles(before, after):
            await emit(session, scope, events.settled(stored, scope.now))


async def apply_payment_reversed(
    session: AsyncSession, scope: Scope, event: PaymentReversed
) -> None:
    """Undo the payment's allocations; an invoice it had settled reopens and is chased again."""
    recorded = await storage.allocations_of(session, scope.tenant, event.payment_id)
    invoice_ids = [r["invoice_id"] for r in recorded] or [a.invoice_id for a in event.allocations]
    await _lock_for(session, scope.tenant, event.account_id, invoice_ids)
    # Read again under the lock: a concurrent writer may have changed them meanwhile.
    recorded = await storage.allocations_of(session, scope.tenant, event.payment_id)
    if not recorded:
        # The reversal overtook the payment: remember it so the payment is never applied.
        for allocation in event.allocations:
            await storage.record_allocation(
                session, scope.tenant, event.payment_id, allocation, applied=False, reversed_=True
            )
        return
    rows = await storage.get_invoices(
        session, scope.tenant, [r["invoice_id"] for r in recorded], for_update=True
    )
    for allocated in recorded:
        if allocated["reversed"]:
            continue
        await storage.mark_reversed(
            session, scope.tenant, event.payment_id, allocated["invoice_id"]
        )
        row = rows.get(allocated["invoice_id"])
        if not allocated["applied"] or row is None:
            continue
        before = balance_of(row)
        after = domain.reverse_payment(
            before, from_minor(allocated["amount_minor"], row["currency"])
        )
        # A reopened invoice is owed an InvoiceOverdue again once it is past due.
        changes = {"overdue_notified_at": None} if domain.reopens(before, after) else {}
        rows[allocated["invoice_id"]] = await storage.store(  # type: ignore[assignment]
            session, row, scope.now, after, **changes
        )


def payments(runtime: Runtime) -> Subscription:
    """Apply ``PaymentReceived`` and ``PaymentReversed`` to the invoices they name."""

    async def handle(session: AsyncSession, envelope: Envelope) -> None:
        # The event's own time: a redelivery must produce the same state.
        scope = scope_for(envelope.tenant, envelope.time, runtime.outbox)
        if isinstance(envelope.data, PaymentReceived):
            await apply_payment_received(session, scope, envelope.data)
        elif isinstance(envelope.data, PaymentReversed):
            await apply_payment_reversed(session, scope, envelope.data)

    return Subscription("invoice-svc", (topics.PAYMENTS,), handle)
