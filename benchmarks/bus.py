"""Throughput of the bus, the consumer runtime and the outbox relay."""

from __future__ import annotations

import resource
import time
import uuid
from pathlib import Path

from dunning_events import topics
from dunning_runtime.bus import create_bus
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database
from dunning_runtime.outbox import Outbox, OutboxRelay
from dunning_runtime.settings import ServiceSettings
from tests.support import ledger
from tests.support.events import message, overdue


def report(name: str, count: int, seconds: float) -> None:
    print(f"{name:<44} {count:>7} events  {seconds:7.2f} s  {count / seconds:9.0f} events/s")


async def run(events: int, data_dir: Path) -> None:
    settings = ServiceSettings(
        service_name="bench",
        data_dir=data_dir,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        database_schema=f"bench_{uuid.uuid4().hex[:8]}",
    )
    backend = "kafka" if not settings.is_embedded_bus else "embedded"
    store = "postgresql" if settings.effective_schema else "sqlite"
    print(f"backend: {backend} bus, {store} store; {events} events, 2,000 keys")
    bus = create_bus(settings)
    await bus.start()
    await bus.ensure_topics([topics.INVOICES])
    envelopes = [overdue(f"acc-{i % 2000:04d}", i // 2000 + 1) for i in range(events)]

    started = time.perf_counter()
    for start in range(0, events, 500):
        await bus.publish([message(e) for e in envelopes[start : start + 500]])
    report("bus publish (batches of 500)", events, time.perf_counter() - started)

    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(ledger.VERSIONS)
    consumer = EventConsumer(
        bus, database, Subscription("bench", (topics.INVOICES,), ledger.apply_event), batch_size=500
    )
    await consumer.consumer.start()
    started = time.perf_counter()
    while await ledger.count_applied(database) < events:
        await consumer.poll_once(1.0)
    report("consume + apply with inbox (batches of 500)", events, time.perf_counter() - started)
    await consumer.consumer.stop()

    outbox = Outbox()
    started = time.perf_counter()
    for start in range(0, events, 100):
        async with database.transaction() as session:
            await outbox.add(session, *envelopes[start : start + 100])
    report("outbox write (100 events per transaction)", events, time.perf_counter() - started)
    relay = OutboxRelay(database, bus, outbox, service="bench")
    started = time.perf_counter()
    published = await relay.flush()
    report("outbox relay publish", published, time.perf_counter() - started)

    await bus.close()
    await database.dispose()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mib:.0f} MiB")
