"""dunning-svc's event handler: invoices, payments and delivery results move accounts.

One batch handler for the three topics it reads: a partition's chunk at once, in one
transaction. ``commands.process`` locks the chunk's accounts, loads them with one
query, folds the events in partition order through the pure core and writes the
accounts, their timelines and the commands back in bulk. The inbox has already
dropped redelivered events, so a redelivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_runtime.app import Runtime
from dunning_runtime.consumer import Subscription
from dunning_svc.commands import PolicyBook, Work, process

#: The consumer group of dunning-svc.
GROUP = "dunning-svc"


async def apply_events(
    session: AsyncSession, runtime: Runtime, book: PolicyBook, envelopes: Sequence[Envelope]
) -> None:
    """Fold a chunk of events into their accounts at the service's clock."""
    work = [Work(e.tenant, e.data.account_id, e.data, traceparent=e.traceparent) for e in envelopes]
    await process(session, runtime.outbox, book, work, runtime.clock.now())


def events(runtime: Runtime) -> Subscription:
    """Invoices, payments and notification results, into the accounts they concern."""
    book = PolicyBook()

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        await apply_events(session, runtime, book, envelopes)

    return Subscription(
        GROUP, (topics.INVOICES, topics.PAYMENTS, topics.NOTIFICATIONS), batch_handler=handle
    )
