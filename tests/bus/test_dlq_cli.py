"""``dunning dlq list|replay``: a dead-lettered event is re-driven and applied once."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_runtime import dlq
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.errors import EventRejected
from tests.bus.test_failure_policy import _at_least, open_ledger, running, wait_for
from tests.support import ledger, procs
from tests.support.events import message, overdue


async def test_rejected_events_are_listed_then_replayed_once_each(settings_factory) -> None:
    settings = settings_factory("ledger")
    database, bus = await open_ledger(settings)
    first, second, fine = overdue("acc-d", 1), overdue("acc-e", 1), overdue("acc-f", 1)
    refusing = {first.id, second.id}

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        if envelope.id in refusing:
            raise EventRejected("the account was not known yet")
        await ledger.apply_event(session, envelope)

    await bus.publish([message(first), message(second), message(fine)])
    consumer = EventConsumer(bus, database, Subscription("ledger", (topics.INVOICES,), handler))
    try:
        async with running(consumer):
            await wait_for(lambda: _at_least(database, 1), 60, "the fine event")

            async def both_dead() -> bool:
                return len(await dlq.list_dead_letters(bus, topics.INVOICES)) == 2

            await wait_for(both_dead, 60, "two dead letters")
            listed = await dlq.list_dead_letters(bus, topics.INVOICES)
            assert {d.event_id for d in listed} == refusing
            assert all("not known yet" in d.reason for d in listed)
            assert all(d.original_topic == topics.INVOICES for d in listed)

            # The rule is fixed: replay only the first one by id, then the rest.
            refusing.clear()
            replayed = await dlq.replay(bus, topics.INVOICES, {first.id})
            assert [d.event_id for d in replayed] == [first.id]
            await wait_for(lambda: _at_least(database, 2), 60, "the replayed event")
            rest = await dlq.replay(bus, topics.INVOICES)
            assert second.id in {d.event_id for d in rest}
            await wait_for(lambda: _at_least(database, 3), 60, "the second replayed event")
            # The replay group remembers: nothing is sent again.
            assert await dlq.replay(bus, topics.INVOICES) == []
            await asyncio.sleep(1)
        rows = await ledger.rows_in_apply_order(database)
        assert sorted(r[0] for r in rows) == sorted([first.id, second.id, fine.id])
        # Still listed: the dead-letter topic is a log, replaying does not empty it.
        assert len(await dlq.list_dead_letters(bus, topics.INVOICES)) == 2
    finally:
        await bus.close()
        await database.dispose()


async def test_replayed_message_has_original_headers_without_dlq_ones(settings_factory) -> None:
    settings = settings_factory("ledger")
    database, bus = await open_ledger(settings)
    event = overdue("acc-h", 1)
    original = message(event)
    await bus.publish(
        [
            type(original)(
                topic="invoices.dlq",
                key=original.key,
                value=original.value,
                headers=[*original.headers, ("dlq_reason", b"because"), ("dlq_attempts", b"1")],
            )
        ]
    )
    reader = bus.consumer("reader", [topics.INVOICES])
    await reader.start()
    try:
        [letter] = await dlq.replay(bus, topics.INVOICES)
        assert letter.event_id == event.id
        records = []
        for _ in range(60):
            records += await reader.poll(0.5, 10)
            if records:
                break
        [record] = records
        assert record.headers == original.headers
        assert record.key == original.key and record.value == original.value
    finally:
        await reader.stop()
        await bus.close()
        await database.dispose()


async def test_console_script_lists_and_replays(settings_factory) -> None:
    settings = settings_factory("ledger")
    database, bus = await open_ledger(settings)
    event = overdue("acc-c", 1)
    original = message(event)
    await bus.publish(
        [
            type(original)(
                topic="invoices.dlq",
                key=original.key,
                value=original.value,
                headers=[*original.headers, ("dlq_reason", b"rejected: no such account")],
            )
        ]
    )
    await bus.close()
    await database.dispose()
    env = procs.settings_env(settings)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dunning_cli", "dlq", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=procs.ROOT,
        )

    listed = await asyncio.to_thread(run, "list", "invoices")
    assert listed.returncode == 0, listed.stderr
    assert event.id in listed.stdout and "no such account" in listed.stdout
    assert "1 dead-lettered event(s) in invoices.dlq" in listed.stdout
    missing = await asyncio.to_thread(run, "replay", "invoices", "--id", "no-such-id")
    assert missing.returncode == 1 and "no-such-id" in missing.stderr
    replayed = await asyncio.to_thread(run, "replay", "invoices", "--id", event.id)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {event.id} to invoices" in replayed.stdout
