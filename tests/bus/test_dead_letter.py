"""Poison events go to ``<topic>.dlq`` with their reason; the consumer goes on."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_events.topics import dead_letter_topic
from dunning_runtime.bus import create_bus
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database
from tests.bus.test_bus_port import drain
from tests.support import ledger
from tests.support.events import message, overdue


async def run_until(
    consumer: EventConsumer, database: Database, count: int, timeout: float = 60
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    await consumer.consumer.start()
    try:
        while loop.time() < deadline and await ledger.count_applied(database) < count:
            await consumer.poll_once(0.5)
        # One more poll proves nothing further arrives.
        await consumer.poll_once(0.5)
    finally:
        await consumer.consumer.stop()


async def setup(settings_factory):
    settings = settings_factory("ledger", consumer_max_attempts=3)
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(ledger.VERSIONS)
    bus = create_bus(settings)
    await bus.start()
    await bus.ensure_topics([topics.INVOICES])
    return settings, database, bus


async def read_dlq(bus, count: int):
    consumer = bus.consumer("dlq-reader", [dead_letter_topic(topics.INVOICES)])
    await consumer.start()
    try:
        return await drain(consumer, count)
    finally:
        await consumer.stop()


async def test_invalid_payload_is_dead_lettered_and_later_events_applied(settings_factory) -> None:
    _, database, bus = await setup(settings_factory)
    good_before, good_after = overdue("acc-1", 1), overdue("acc-1", 3)
    poison = replace(message(overdue("acc-1", 2)), value=b'{"account_id": 42}')
    await bus.publish([message(good_before), poison, message(good_after)])

    consumer = EventConsumer(
        bus, database, Subscription("ledger", (topics.INVOICES,), ledger.apply_event)
    )
    await run_until(consumer, database, 2)

    rows = await ledger.rows_in_apply_order(database)
    assert [r[0] for r in rows] == [good_before.id, good_after.id]
    [dead] = await read_dlq(bus, 1)
    assert dead.value == b'{"account_id": 42}'
    assert dead.header("dlq_original_topic") == topics.INVOICES
    assert dead.header("dlq_attempts") == "1"
    reason = dead.header("dlq_reason") or ""
    assert "undecodable" in reason and "account_id" in reason, reason
    await bus.close()
    await database.dispose()


async def test_handler_failing_every_time_is_dead_lettered_after_max_attempts(
    settings_factory,
) -> None:
    _, database, bus = await setup(settings_factory)
    doomed, fine = overdue("acc-7", 1), overdue("acc-8", 1)
    calls: list[str] = []

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        calls.append(envelope.id)
        if envelope.id == doomed.id:
            raise RuntimeError("the ledger refuses acc-7")
        await ledger.apply_event(session, envelope)

    await bus.publish([message(doomed), message(fine)])
    consumer = EventConsumer(
        bus,
        database,
        Subscription("ledger", (topics.INVOICES,), handler),
        max_attempts=3,
        retry_backoff_s=0.01,
    )
    await run_until(consumer, database, 1)

    assert [r[0] for r in await ledger.rows_in_apply_order(database)] == [fine.id]
    # Batch attempt (if both shared a partition) plus three attempts alone.
    assert 3 <= calls.count(doomed.id) <= 4
    [dead] = await read_dlq(bus, 1)
    assert dead.header("ce_id") == doomed.id
    assert dead.header("dlq_attempts") == "3"
    assert "RuntimeError: the ledger refuses acc-7" in (dead.header("dlq_reason") or "")
    await bus.close()
    await database.dispose()


async def test_transient_failure_is_retried_not_dead_lettered(settings_factory) -> None:
    _, database, bus = await setup(settings_factory)
    flaky = overdue("acc-9", 1)
    failures = {"left": 2}

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("database blinked")
        await ledger.apply_event(session, envelope)

    await bus.publish([message(flaky)])
    consumer = EventConsumer(
        bus,
        database,
        Subscription("ledger", (topics.INVOICES,), handler),
        max_attempts=5,
        retry_backoff_s=0.01,
    )
    await run_until(consumer, database, 1)
    assert [r[0] for r in await ledger.rows_in_apply_order(database)] == [flaky.id]
    end = await bus.end_offsets(dead_letter_topic(topics.INVOICES))
    assert sum(end.values()) == 0, "nothing may reach the DLQ"
    await bus.close()
    await database.dispose()


async def test_redelivered_event_is_applied_once(settings_factory) -> None:
    _, database, bus = await setup(settings_factory)
    event = overdue("acc-2", 1)
    # The same event published twice, as a relay that crashed after publishing would.
    await bus.publish([message(event), message(event), message(overdue("acc-2", 2))])
    consumer = EventConsumer(
        bus, database, Subscription("ledger", (topics.INVOICES,), ledger.apply_event)
    )
    await run_until(consumer, database, 2)
    assert [r[2] for r in await ledger.rows_in_apply_order(database)] == [1, 2]
    await bus.close()
    await database.dispose()
