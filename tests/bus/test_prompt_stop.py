"""A stop finishes promptly whatever the consumer, relay or bus is doing.

``STOP_LIMIT_S`` is the harness's limit for catching a hang, not a speed claim: a
stop used to wait up to a minute behind SQLite's busy timeout and 10-50 s behind
aiokafka calls to a dead broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_runtime.bus import EmbeddedBus, KafkaBus
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.outbox import Outbox, OutboxRelay
from tests.bus.test_failure_policy import open_ledger, wait_for
from tests.support import ledger
from tests.support.events import message, overdue

STOP_LIMIT_S = 5.0


async def stops_within_limit(task: asyncio.Task[Any], then: Awaitable[Any] | None = None) -> None:
    """Cancel ``task`` (then await ``then``, e.g. closing the bus) within the limit."""
    started = time.monotonic()
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), STOP_LIMIT_S)
    if then is not None:
        await asyncio.wait_for(then, STOP_LIMIT_S - (time.monotonic() - started))


@asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """A port that accepts connections and never answers: a hung broker."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


async def test_consumer_stops_promptly_while_joining_idle_and_mid_chunk(settings_factory) -> None:
    settings = settings_factory("ledger")
    database, bus = await open_ledger(settings)
    in_handler = asyncio.Event()

    async def slow(session: AsyncSession, envelope: Envelope) -> None:
        in_handler.set()
        await asyncio.sleep(3600)

    try:
        # Joining: cancelled as soon as it began.
        joining = EventConsumer(
            bus, database, Subscription("joining", (topics.INVOICES,), ledger.apply_event)
        )
        task = asyncio.create_task(joining.run())
        await asyncio.sleep(0.01)
        await stops_within_limit(task)
        # Idle: joined, nothing to read.
        idle = EventConsumer(
            bus, database, Subscription("idle", (topics.INVOICES,), ledger.apply_event)
        )
        task = asyncio.create_task(idle.run())
        await asyncio.wait_for(idle.started.wait(), 60)
        await asyncio.sleep(0.5)
        await stops_within_limit(task)
        assert not idle.started.is_set()
        # Mid-chunk: the handler is inside its transaction.
        await bus.publish([message(overdue("acc-s", 1))])
        busy = EventConsumer(bus, database, Subscription("busy", (topics.INVOICES,), slow))
        task = asyncio.create_task(busy.run())
        await asyncio.wait_for(in_handler.wait(), 60)
        await stops_within_limit(task)
        # The same consumer runs again after a stop (the supervisor's restart).
        task = asyncio.create_task(busy.run())
        await asyncio.wait_for(busy.started.wait(), 60)
        await stops_within_limit(task)
    finally:
        await bus.close()
        await database.dispose()


async def test_relay_stop_and_bus_close_are_prompt_mid_publish(settings_factory) -> None:
    settings = settings_factory("ledger")
    database, bus = await open_ledger(settings)
    outbox = Outbox()
    async with database.transaction() as session:
        await outbox.add(session, *(overdue("acc-p", seq) for seq in range(1, 4)))
    relay = OutboxRelay(database, bus, outbox, service="ledger")
    lock: sqlite3.Connection | None = None
    try:
        if settings.is_embedded_bus:
            # Another process holds the log's write lock: the publish waits for it.
            lock = sqlite3.connect(settings.embedded_bus_path, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
        task = asyncio.create_task(relay.run())
        await asyncio.sleep(1.0)  # mid-publish (blocked on the lock, or sending)
        await stops_within_limit(task, bus.close())
    finally:
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
        await bus.close()
        await database.dispose()


async def test_kafka_clients_stop_promptly_when_the_broker_hangs(settings_factory) -> None:
    """Start, join and publish against a broker that accepts and never answers."""
    settings = settings_factory("ledger")
    database, own_bus = await open_ledger(settings)
    await own_bus.close()
    try:
        async with black_hole() as port:
            bus = KafkaBus([f"127.0.0.1:{port}"], topic_prefix="hung.")
            task = asyncio.create_task(bus.start())
            await asyncio.sleep(1.0)
            await stops_within_limit(task, bus.close())

            consumer = EventConsumer(
                bus, database, Subscription("hung", (topics.INVOICES,), ledger.apply_event)
            )
            task = asyncio.create_task(consumer.run())
            await asyncio.sleep(1.0)
            await stops_within_limit(task)

            task = asyncio.create_task(bus.ping())
            await asyncio.sleep(1.0)
            await stops_within_limit(task, bus.close())
    finally:
        await database.dispose()


async def test_a_stopped_consumer_leaves_its_group_so_another_member_takes_over(
    settings_factory,
) -> None:
    settings = settings_factory("ledger", bus_partitions=1)
    database, bus = await open_ledger(settings)
    subscription = Subscription("ledger", (topics.INVOICES,), ledger.apply_event)
    first, second = EventConsumer(bus, database, subscription), None
    try:
        task = asyncio.create_task(first.run())
        await asyncio.wait_for(first.started.wait(), 60)
        await stops_within_limit(task)
        second = EventConsumer(bus, database, subscription)
        task = asyncio.create_task(second.run())
        await bus.publish([message(overdue("acc-l", 1))])

        async def applied() -> bool:
            return await ledger.count_applied(database) == 1

        # Well within the group's session timeout: the first member said goodbye.
        await wait_for(applied, 8, "the second member to read the partition")
        await stops_within_limit(task)
    finally:
        await bus.close()
        await database.dispose()


async def test_a_swallowed_cancellation_still_stops_the_loop() -> None:
    """aiokafka's client close() suppresses CancelledError, the caller's own included."""
    from dunning_runtime.errors import raise_if_cancelled

    steps: list[str] = []

    async def close_like_aiokafka() -> None:
        inner = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        inner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.5)  # the caller's cancellation lands here and is eaten
        await asyncio.gather(inner, return_exceptions=True)

    async def loop() -> None:
        while True:
            raise_if_cancelled()
            steps.append("step")
            await close_like_aiokafka()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.1)
    await stops_within_limit(task)
    assert task.cancelled()
    assert len(steps) == 1


# An unclosed aiokafka client or aiosqlite connection warns from __del__: make it fail.
pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


async def test_a_start_cancelled_mid_join_leaves_the_log_writable(tmp_path) -> None:
    """A stop right after a start cancels the consumer while it joins, inside the join's
    write transaction. The connection used to be closed under that transaction, and SQLite
    kept it (and the log's write lock) as long as the transaction's cursor lived: the next
    start of any process on the same log hung for a minute. A cancelled BEGIN left the bus's
    own connection inside a transaction the same way. Cancel at many points of the join;
    after each, another writer must get the write lock within seconds."""
    bus = EmbeddedBus(tmp_path / "log.sqlite", partitions=8)
    await bus.start()
    try:
        await bus.ensure_topics([topics.INVOICES])
        for step in range(60):
            consumer = bus.consumer("g", [topics.INVOICES])
            joining = asyncio.create_task(consumer.start())
            await asyncio.sleep(step * 0.0005)  # into the join, a little further each time
            joining.cancel()
            await asyncio.gather(joining, return_exceptions=True)
            await consumer.stop()
            # Off the event loop: the shielded writes it waits for must be able to finish.
            await asyncio.to_thread(_take_write_lock, tmp_path / "log.sqlite")
    finally:
        await bus.close()


def _take_write_lock(path: Path) -> None:
    """Take and drop the log's write lock; "database is locked" if held for over 5 s."""
    other = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
