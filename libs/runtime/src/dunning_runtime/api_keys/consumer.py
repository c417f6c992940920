"""The api-keys topic: every service merges every key's record into its own table."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_events.keys import ApiKeyRecorded
from dunning_runtime.api_keys.records import KeyRecord
from dunning_runtime.api_keys.storage import record
from dunning_runtime.consumer import Subscription
from dunning_runtime.errors import EventRejected


async def apply_event(session: AsyncSession, envelope: Envelope) -> None:
    """Merge an ``ApiKeyRecorded`` into the service's table (handler of ``subscription``)."""
    if not isinstance(envelope.data, ApiKeyRecorded):
        raise EventRejected(f"{envelope.type} does not belong on {topics.API_KEYS}")
    await record(session, KeyRecord.of_event(envelope.data))


def subscription(service: str) -> Subscription:
    """What every service consumes of the api-keys topic, in its own group."""
    return Subscription(group=f"{service}-keys", topics=(topics.API_KEYS,), handler=apply_event)
