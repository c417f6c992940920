"""invoice-svc's event handlers: payments move invoice balances."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, PaymentReceived, PaymentReversed, topics
from dunning_runtime.app import Runtime
from dunning_runtime.consumer import Subscription
from invoice_svc import commands
from invoice_svc.commands import Scope


def payments(runtime: Runtime) -> Subscription:
    """Apply ``PaymentReceived`` and ``PaymentReversed`` to the invoices they name."""

    async def handle(session: AsyncSession, envelope: Envelope) -> None:
        # The event's own time: a redelivery must produce the same state.
        scope = Scope(envelope.tenant, envelope.time, runtime.outbox)
        if isinstance(envelope.data, PaymentReceived):
            await commands.apply_payment_received(session, scope, envelope.data)
        elif isinstance(envelope.data, PaymentReversed):
            await commands.apply_payment_reversed(session, scope, envelope.data)

    return Subscription("invoice-svc", (topics.PAYMENTS,), handle)
