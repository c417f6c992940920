"""payment-svc's subscriptions: declarations only; the use cases are in ``commands``."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_runtime.app import Runtime
from dunning_runtime.consumer import Subscription
from payment_svc import commands


def invoice_view(runtime: Runtime) -> Subscription:
    """Keep payment-svc's view of invoices from the invoices topic, a partition's chunk
    at once (``commands.apply_invoice_events``): new invoices take waiting credit."""

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        await commands.apply_invoice_events(session, runtime.scope, envelopes)

    return Subscription("payment-svc", (topics.INVOICES,), batch_handler=handle)
