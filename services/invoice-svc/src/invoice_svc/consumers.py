"""invoice-svc's subscriptions: which use case applies each chunk.

- ``payments``: ``PaymentReceived``, ``CreditApplied`` and ``PaymentReversed`` move
  invoice balances (``commands.payments``);
- ``fees``: ``LateFeeAssessed`` from dunning-svc becomes a fee invoice
  (``commands.fees``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_runtime.app import Runtime
from dunning_runtime.consumer import Subscription
from invoice_svc import commands
from invoice_svc.settings import InvoiceSettings


def payments(runtime: Runtime) -> Subscription:
    """Apply ``PaymentReceived``, ``CreditApplied`` and ``PaymentReversed`` to the invoices
    they name."""

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        await commands.apply_payments(session, runtime.outbox, envelopes)

    return Subscription("invoice-svc", (topics.PAYMENTS,), batch_handler=handle)


def fees(runtime: Runtime[InvoiceSettings]) -> Subscription:
    """Late fees charged by dunning-svc become fee invoices."""
    settings = runtime.settings

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        await commands.create_fee_invoices(
            session, runtime.outbox, settings.grace_days_for, envelopes
        )

    return Subscription("invoice-svc-fees", (topics.DUNNING_EVENTS,), batch_handler=handle)
