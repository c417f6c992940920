"""The transactional outbox: nothing committed is lost, nothing is applied twice."""

from __future__ import annotations

import asyncio

from dunning_events import topics
from dunning_runtime.bus import create_bus
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database
from dunning_runtime.outbox import Outbox, OutboxRelay
from tests.bus.test_bus_port import drain
from tests.bus.test_dead_letter import run_until
from tests.support import ledger, procs
from tests.support.events import overdue
from tests.support.fixtures import until


async def open_ledger(settings):
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(ledger.VERSIONS)
    bus = create_bus(settings)
    await bus.start()
    await bus.ensure_topics([topics.INVOICES])
    return database, bus


async def test_relay_wakes_on_commit_without_waiting_for_its_poll(settings_factory) -> None:
    database, bus = await open_ledger(settings_factory("ledger"))
    outbox = Outbox()
    # An hour-long poll: only the commit hook can make the relay publish in time.
    relay = OutboxRelay(database, bus, outbox, service="ledger", poll_interval_s=3600)
    task = asyncio.create_task(relay.run())
    reader = bus.consumer("reader", [topics.INVOICES])
    await reader.start()
    try:
        await asyncio.sleep(0.2)  # the relay's first (empty) pass is done and it waits
        events = [overdue("acc-w", seq) for seq in range(1, 4)]
        async with database.transaction() as session:
            await outbox.add(session, *events)
        records = await drain(reader, 3, timeout=20)
        assert [r.header("ce_id") for r in records] == [e.id for e in events]

        # The relay deletes a batch after publishing it, so a fast reader can see the
        # records first. With an hour-long poll, only this same pass can delete them.
        async def published_rows_deleted() -> bool:
            return await relay.pending() == 0

        await until(published_rows_deleted, timeout_s=20, what="the published rows deleted")
    finally:
        task.cancel()
        await reader.stop()
        await bus.close()
        await database.dispose()


async def test_rolled_back_transaction_publishes_nothing(settings_factory) -> None:
    database, bus = await open_ledger(settings_factory("ledger"))
    outbox = Outbox()
    try:
        async with database.transaction() as session:
            await outbox.add(session, overdue("acc-r", 1))
            raise RuntimeError("the state change failed")
    except RuntimeError:
        pass
    relay = OutboxRelay(database, bus, outbox, service="ledger")
    assert await relay.flush() == 0
    assert sum((await bus.end_offsets(topics.INVOICES)).values()) == 0
    await bus.close()
    await database.dispose()


async def test_crash_between_commit_and_publish_publishes_on_restart(settings_factory) -> None:
    settings = settings_factory("ledger")
    database, bus = await open_ledger(settings)
    writer = procs.start("tests.support.outbox_writer", "commit", env=procs.settings_env(settings))
    procs.kill(writer)
    assert sum((await bus.end_offsets(topics.INVOICES)).values()) == 0, "nothing published yet"

    relay = OutboxRelay(database, bus, Outbox(), service="ledger")
    assert await relay.flush() == 3
    consumer = EventConsumer(
        bus, database, Subscription("ledger", (topics.INVOICES,), ledger.apply_event)
    )
    await run_until(consumer, database, 3)
    assert [r[2] for r in await ledger.rows_in_apply_order(database)] == [1, 2, 3]
    await bus.close()
    await database.dispose()


async def test_crash_between_publish_and_cleanup_republishes_but_applies_once(
    settings_factory,
) -> None:
    settings = settings_factory("ledger")
    database, bus = await open_ledger(settings)
    writer = procs.start("tests.support.outbox_writer", "commit", env=procs.settings_env(settings))
    procs.kill(writer)
    relay_proc = procs.start(
        "tests.support.outbox_writer", "publish", env=procs.settings_env(settings)
    )
    procs.kill(relay_proc)
    assert sum((await bus.end_offsets(topics.INVOICES)).values()) == 3

    # The dead relay's lease must lapse before a new relay may publish.
    relay = OutboxRelay(database, bus, Outbox(), service="ledger", lease_s=15)
    published = 0
    for _ in range(40):
        published = await relay.flush()
        if published:
            break
        await asyncio.sleep(0.5)
    assert published == 3, "the rows left behind must be published again"
    assert sum((await bus.end_offsets(topics.INVOICES)).values()) == 6

    consumer = EventConsumer(
        bus, database, Subscription("ledger", (topics.INVOICES,), ledger.apply_event)
    )
    await run_until(consumer, database, 3)
    assert [r[2] for r in await ledger.rows_in_apply_order(database)] == [1, 2, 3]
    await bus.close()
    await database.dispose()


async def test_only_one_relay_publishes_at_a_time(settings_factory) -> None:
    database, bus = await open_ledger(settings_factory("ledger"))
    outbox = Outbox()
    async with database.transaction() as session:
        await outbox.add(session, overdue("acc-l", 1))
    first = OutboxRelay(database, bus, outbox, service="ledger")
    second = OutboxRelay(database, bus, outbox, service="ledger")
    assert await first.flush() == 1
    async with database.transaction() as session:
        await outbox.add(session, overdue("acc-l", 2))
    assert await second.flush() == 0, "the second relay must wait for the first one's lease"
    assert await first.flush() == 1
    await bus.close()
    await database.dispose()


async def two_relays(settings_factory):
    """A ledger's database, bus and outbox, and two relays of it with 60 s leases."""
    database, bus = await open_ledger(settings_factory("ledger"))
    outbox = Outbox()
    first = OutboxRelay(database, bus, outbox, service="ledger", lease_s=60)
    second = OutboxRelay(database, bus, outbox, service="ledger", lease_s=60)
    return database, bus, outbox, first, second


async def add_one(database: Database, outbox: Outbox, account: str, seq: int) -> None:
    async with database.transaction() as session:
        await outbox.add(session, overdue(account, seq))


async def test_a_stopping_relay_hands_its_lease_over_at_once(settings_factory) -> None:
    database, bus, outbox, first, second = await two_relays(settings_factory)
    await add_one(database, outbox, "acc-h", 1)
    assert await first.flush() == 1
    await add_one(database, outbox, "acc-h", 2)
    await second.release_lease()  # not the owner: changes nothing
    assert await second.flush() == 0, "the first relay still holds its lease"
    await first.release_lease()
    assert await second.flush() == 1, "a released lease is taken without waiting 60 s"
    await bus.close()
    await database.dispose()


async def _lease_expiry(database: Database) -> object:
    from sqlalchemy import select

    from dunning_runtime.messaging_tables import relay_lease

    async with database.sessions() as session:
        return (await session.execute(select(relay_lease.c.expires_at))).scalar_one()


async def test_a_fresh_lease_is_not_written_again_and_a_third_used_is_renewed(
    settings_factory,
) -> None:
    """The fast path of ``_hold_lease``: within a third of the lease after writing it, a
    flush publishes without renewing it (the row is unchanged); past that it renews as
    before; another relay is kept out all along, and a released lease is free at once."""
    database, bus, outbox, first, second = await two_relays(settings_factory)
    await add_one(database, outbox, "acc-f", 1)
    assert await first.flush() == 1
    written = await _lease_expiry(database)
    await add_one(database, outbox, "acc-f", 2)
    assert await second.flush() == 0, "the first relay holds its lease"
    assert await first.flush() == 1
    assert await _lease_expiry(database) == written, "a fresh lease is not written again"
    first._held_until = 0.0  # a third of the lease has passed
    await add_one(database, outbox, "acc-f", 3)
    await asyncio.sleep(0.01)
    assert await first.flush() == 1
    assert await _lease_expiry(database) > written, "an older lease is renewed"
    await first.release_lease()
    await add_one(database, outbox, "acc-f", 4)
    assert await second.flush() == 1, "a released lease is taken at once"
    assert await first.flush() == 0, "and the first relay no longer publishes"
    await bus.close()
    await database.dispose()
