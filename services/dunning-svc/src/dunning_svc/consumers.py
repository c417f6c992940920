"""dunning-svc's event handler: invoices, payments and delivery results move accounts.

One batch handler for the three topics it reads: a partition's chunk at once, in one
transaction. ``commands.apply_events`` locks the chunk's accounts, loads them with one
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
from dunning_svc.commands import PolicyBook, apply_events

#: The consumer group of dunning-svc.
GROUP = "dunning-svc"


def events(runtime: Runtime) -> Subscription:
    """Invoices, payments and notification results, into the accounts they concern."""
    book = PolicyBook()

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        await apply_events(session, runtime, book, envelopes)

    return Subscription(
        GROUP, (topics.INVOICES, topics.PAYMENTS, topics.NOTIFICATIONS), batch_handler=handle
    )
