"""Kafka-only behaviour: a member with no partitions stays in its group.

aiokafka will not rejoin a member that has been idle (no ``getmany``) for
longer than ``max_poll_interval_ms`` (#720, #1187); a member with nothing
assigned is idle by nature. The consumer runtime keeps polling, so the spare
member must take over when the owner leaves, long after that interval.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from dunning_events import topics
from dunning_runtime.bus import KafkaBus
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database
from tests.support import ledger
from tests.support.events import message, overdue
from tests.support.servers import require_kafka

pytestmark = pytest.mark.kafka


async def test_spare_member_takes_over_after_max_poll_interval(settings_factory) -> None:
    bootstrap = require_kafka()
    settings = settings_factory("ledger")
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(ledger.VERSIONS)
    prefix = f"k{uuid.uuid4().hex[:8]}."
    # One partition, two members: one of them holds nothing.
    bus = KafkaBus(
        [bootstrap],
        partitions=1,
        topic_prefix=prefix,
        max_poll_interval_ms=3_000,
        session_timeout_ms=6_000,
    )
    await bus.start()
    await bus.ensure_topics([topics.INVOICES])
    subscription = Subscription("ledger", (topics.INVOICES,), ledger.apply_event)
    first = EventConsumer(bus, database, subscription)
    second = EventConsumer(bus, database, subscription)
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        await bus.publish([message(overdue("acc-k", 1))])
        for _ in range(300):
            if await ledger.count_applied(database) == 1:
                break
            await asyncio.sleep(0.1)
        owner, spare = (first, second) if first.consumer.assignment() else (second, first)
        assert owner.consumer.assignment() and not spare.consumer.assignment()
        # Well past max_poll_interval_ms with an empty assignment.
        await asyncio.sleep(6)
        owner_task = tasks[0] if owner is first else tasks[1]
        owner_task.cancel()
        await asyncio.gather(owner_task, return_exceptions=True)
        await bus.publish([message(overdue("acc-k", 2))])
        for _ in range(600):
            if await ledger.count_applied(database) == 2:
                break
            await asyncio.sleep(0.1)
        assert [r[2] for r in await ledger.rows_in_apply_order(database)] == [1, 2]
        assert spare.consumer.assignment() == {(topics.INVOICES, 0)}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
        await database.dispose()
