"""notify-svc's subscription: one group reads ``NotificationRequested`` commands and
``DunningStageChanged`` events; ``commands.requests.apply`` records and follows them.
Nothing is sent here: the delivery worker is woken once a chunk that left a notice
pending has committed."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_runtime.app import Runtime
from dunning_runtime.consumer import Subscription
from dunning_runtime.db import on_commit
from notify_svc.commands import requests
from notify_svc.settings import NotifySettings
from notify_svc.workers import Delivery

GROUP = "notify-svc"


def commands(runtime: Runtime[NotifySettings]) -> Subscription:
    """Record requests and follow stage changes; wake the delivery worker after each
    chunk that left a notice pending."""
    wake = runtime.worker(Delivery).wake

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        now = runtime.clock.now()
        if await requests.apply(session, runtime.outbox, runtime.settings, envelopes, now):
            on_commit(session, wake)

    return Subscription(
        GROUP, (topics.DUNNING_COMMANDS, topics.DUNNING_EVENTS), batch_handler=handle
    )
