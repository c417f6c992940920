"""A service stops promptly whatever its tasks are doing, and leaves nothing running.

Each test starts a service in one state (idle, consumer joining its group, relay
in the middle of publishing a large outbox, bus unreachable) and stops it. The
stop must finish within ``STOP_LIMIT_S``: a harness limit that catches a hang,
not a speed measurement. Afterwards no thread the service started may be left
(aiosqlite's worker threads are not daemons: one left behind keeps the process
alive) and no Kafka client may be left unclosed.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from dunning_events import topics
from dunning_runtime.app import Runtime, ServiceSpec, start_runtime, stop_runtime
from dunning_runtime.bus import create_bus
from dunning_runtime.db import Database
from dunning_runtime.messaging_tables import outbox
from dunning_runtime.settings import ServiceSettings
from invoice_svc.main import SPEC as INVOICE
from tests.support.events import message, overdue
from tests.support.fixtures import ledger_spec, until
from tests.support.tcp_proxy import TcpProxy

#: Generous: a stop takes well under a second; this only catches a hang.
STOP_LIMIT_S = 5.0
SPECS = {"invoice-svc": INVOICE, "ledger-svc": ledger_spec()}


def _service_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if not t.daemon and t not in before and t.is_alive()]


@asynccontextmanager
async def watched() -> AsyncIterator[None]:
    """Fail if, once the block is done, a non-daemon thread or an unclosed Kafka client
    it created is still around."""
    before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        deadline = time.monotonic() + 2  # a worker thread may need a moment to exit
        while _service_threads(before) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        gc.collect()
    left = _service_threads(before)
    assert not left, f"threads left running: {[t.name for t in left]}"
    unclosed = [str(w.message) for w in caught if "Unclosed" in str(w.message)]
    assert not unclosed, unclosed


async def stop_in_time(runtime: Runtime) -> float:
    """Stop ``runtime``; fail if that takes longer than the harness limit."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(stop_runtime(runtime), STOP_LIMIT_S * 3)
    except TimeoutError:
        pytest.fail(f"stop did not finish within {STOP_LIMIT_S * 3} s")
    seconds = time.monotonic() - started
    assert seconds < STOP_LIMIT_S, f"stop took {seconds:.1f} s"
    return seconds


async def running_tasks(runtime: Runtime) -> None:
    async def up() -> bool:
        return not runtime.supervisor.down()

    await until(up, what="every task running")


@pytest.mark.parametrize("service", sorted(SPECS))
async def test_stop_when_idle(
    settings_factory: Callable[..., ServiceSettings], service: str
) -> None:
    spec = SPECS[service]
    async with watched():
        runtime = await start_runtime(spec, settings_factory(spec.name, clock="manual"))
        await running_tasks(runtime)
        await asyncio.sleep(0.5)
        await stop_in_time(runtime)


@pytest.mark.parametrize("service", sorted(SPECS))
async def test_stop_while_consumers_join_their_group(
    settings_factory: Callable[..., ServiceSettings], service: str
) -> None:
    spec = SPECS[service]
    async with watched():
        runtime = await start_runtime(spec, settings_factory(spec.name, clock="manual"))
        await asyncio.sleep(0)  # the tasks have started; the consumers are joining now
        await stop_in_time(runtime)


async def test_stop_while_the_relay_publishes_a_large_outbox(
    settings_factory: Callable[..., ServiceSettings],
) -> None:
    spec: ServiceSpec = SPECS["ledger-svc"]
    async with watched():
        runtime = await start_runtime(spec, settings_factory(spec.name))
        await running_tasks(runtime)
        total = 20_000
        for start in range(0, total, 5_000):
            async with runtime.database.transaction() as session:
                await runtime.outbox.add(
                    session, *(overdue(f"acc-{i % 50}", i) for i in range(start, start + 5_000))
                )

        async def publishing() -> bool:
            return await runtime.relay.pending() < total

        await until(publishing, what="the relay publishing")
        await stop_in_time(runtime)
    # What was not published stays in the outbox for the next start: nothing is lost
    # (a batch cut off mid-publish may be published twice; the inbox absorbs that).
    left = await outbox_rows(runtime.settings)
    published = await published_count(runtime.settings)
    assert published > 0 and left < total
    assert published + left >= total


async def outbox_rows(settings: ServiceSettings) -> int:
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    try:
        async with database.sessions() as session:
            query = select(func.count()).select_from(outbox)
            return int((await session.execute(query)).scalar_one())
    finally:
        await database.dispose()


async def published_count(settings: ServiceSettings) -> int:
    bus = create_bus(settings)
    await bus.start()
    try:
        return sum((await bus.end_offsets(topics.INVOICES)).values())
    finally:
        await bus.close()


async def test_stop_while_the_bus_is_unreachable(
    settings_factory: Callable[..., ServiceSettings],
) -> None:
    spec: ServiceSpec = SPECS["ledger-svc"]
    settings = settings_factory(spec.name)
    if not settings.is_embedded_bus:
        pytest.skip("the embedded log is locked here; Kafka: see test_start_with_no_broker")
    async with watched():
        runtime = await start_runtime(spec, settings)
        await running_tasks(runtime)
        # Another process holds the log's write lock: every append and heartbeat waits.
        blocker = sqlite3.connect(settings.embedded_bus_path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            async with runtime.database.transaction() as session:
                await runtime.outbox.add(session, *(overdue("acc-1", i) for i in range(10)))
            await asyncio.sleep(1.5)  # relay and heartbeat are now stuck on the lock
            await stop_in_time(runtime)
        finally:
            blocker.rollback()
            blocker.close()


async def test_stop_while_the_database_is_unreachable(
    settings_factory: Callable[..., ServiceSettings],
) -> None:
    spec: ServiceSpec = SPECS["ledger-svc"]
    settings = settings_factory(spec.name)
    proxy: TcpProxy | None = None
    blocker: sqlite3.Connection | None = None
    if settings.effective_database_url.startswith("postgresql"):
        # A proxy between the service and PostgreSQL that the test cuts: a real outage
        # for this service only, while the shared server keeps serving everyone else.
        url = make_url(settings.effective_database_url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        await proxy.start()
        proxied = url.set(host="127.0.0.1", port=proxy.port)
        settings = settings_factory(
            spec.name, database_url=proxied.render_as_string(hide_password=False)
        )
    try:
        async with watched():
            runtime = await start_runtime(spec, settings)
            await running_tasks(runtime)
            if proxy is not None:
                proxy.cut()
            else:  # another process holds the database's write lock
                path = make_url(settings.effective_database_url).database or ""
                blocker = sqlite3.connect(path, isolation_level=None)
                blocker.execute("BEGIN IMMEDIATE")
            # The consumer now tries to apply these and waits on (or retries) the database.
            await runtime.bus.publish([message(overdue("acc-1", i)) for i in range(1, 20)])
            await asyncio.sleep(1.5)
            try:
                await stop_in_time(runtime)
            finally:
                if blocker is not None:
                    blocker.rollback()
                    blocker.close()
    finally:
        if proxy is not None:
            await proxy.stop()


async def test_start_with_no_broker_fails_promptly_and_leaves_nothing(
    settings_factory: Callable[..., ServiceSettings],
) -> None:
    with socket_closed() as port:
        settings = settings_factory("ledger-svc", bus_url=f"kafka://127.0.0.1:{port}")
    spec: ServiceSpec = SPECS["ledger-svc"]
    async with watched():
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - whichever error aiokafka gives
            runtime = await asyncio.wait_for(start_runtime(spec, settings), 60)
            await stop_runtime(runtime)
        assert time.monotonic() - started < 60


class socket_closed:
    """A local port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *_: object) -> None:
        return None
