"""Bounded state: the inbox and the embedded log are trimmed, never past what is needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from dunning_events import topics
from dunning_runtime import inbox
from dunning_runtime.bus import EmbeddedBus, create_bus
from dunning_runtime.db import Database
from dunning_runtime.messaging_tables import inbox as inbox_table
from tests.bus.test_bus_port import drain
from tests.support import ledger
from tests.support.events import message, overdue

NOW = datetime.now(UTC)


async def test_inbox_purge_forgets_only_rows_older_than_the_window(settings_factory) -> None:
    settings = settings_factory("ledger")
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(ledger.VERSIONS)
    old, older = NOW - timedelta(days=8), NOW - timedelta(days=9)
    rows = [
        ("ledger", "e-old", older),
        ("ledger", "e-mid", old),
        ("ledger", "e-new", NOW),
        # The same event id in another group, recent: a purge by the first group's
        # old row must not take it.
        ("other", "e-old", NOW),
    ]
    try:
        async with database.transaction() as session:
            await session.execute(
                insert(inbox_table),
                [
                    {
                        "consumer_group": g,
                        "event_id": e,
                        "topic": topics.INVOICES,
                        "outcome": inbox.APPLIED,
                        "received_at": at,
                    }
                    for g, e, at in rows
                ],
            )
        cutoff = NOW - timedelta(days=7)
        async with database.transaction() as session:
            assert await inbox.purge(session, cutoff, limit=1) == 1  # the limit holds
        async with database.transaction() as session:
            assert await inbox.purge(session, cutoff, limit=100) == 1
        async with database.transaction() as session:
            assert await inbox.purge(session, cutoff, limit=100) == 0
        async with database.sessions() as session:
            left = {
                (r.consumer_group, r.event_id)
                for r in await session.execute(
                    select(inbox_table.c.consumer_group, inbox_table.c.event_id)
                )
            }
        assert left == {("ledger", "e-new"), ("other", "e-old")}
        # What is kept still stops a redelivery; what was purged is new again.
        async with database.transaction() as session:
            new = await inbox.record_new(
                session, "ledger", [("e-new", topics.INVOICES), ("e-old", topics.INVOICES)]
            )
        assert new == {"e-old"}
    finally:
        await database.dispose()


async def test_embedded_log_keeps_what_a_group_still_needs(settings_factory, tmp_path) -> None:
    settings = settings_factory("ledger")
    if not settings.is_embedded_bus:
        bus = create_bus(settings)
        await bus.start()
        try:
            assert await bus.enforce_retention() == 0  # the broker's retention applies
        finally:
            await bus.close()
        return
    bus = EmbeddedBus(tmp_path / "log.sqlite", partitions=1, max_records=5, retention_hours=1e6)
    await bus.start()
    try:
        await bus.ensure_topics([topics.INVOICES])
        await bus.publish([message(overdue("acc-r", seq)) for seq in range(1, 21)])
        reader = bus.consumer("reader", [topics.INVOICES])
        await reader.start()
        await drain(reader, 20)
        await reader.commit({(topics.INVOICES, 0): 12})
        await reader.stop()
        late = bus.consumer("late", [topics.INVOICES])
        await late.start()  # joined, nothing committed yet: it needs every record
        assert await bus.enforce_retention() == 0
        await late.stop()
        # Only "reader" is left; it needs offsets 12 and up. By size 15 could go.
        assert await bus.enforce_retention() == 12
        assert await bus.enforce_retention() == 0
        again = bus.consumer("reader", [topics.INVOICES])
        await again.start()
        records = await drain(again, 8)
        assert [r.offset for r in records] == list(range(12, 20))
        await again.commit({(topics.INVOICES, 0): 18})
        await again.stop()
        # A new group starts at the oldest record kept.
        fresh = bus.consumer("fresh", [topics.INVOICES])
        await fresh.start()
        records = await drain(fresh, 8)
        await fresh.stop()
        assert records[0].offset == 12
        # By age: every record older than the window goes, but not what "reader" still
        # needs (18 and 19), though they are just as old.
        aged = EmbeddedBus(tmp_path / "log.sqlite", partitions=1, retention_hours=0)
        await aged.start()
        try:
            assert await aged.enforce_retention() == 6
        finally:
            await aged.close()
    finally:
        await bus.close()
