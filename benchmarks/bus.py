"""Throughput of the bus, the consumer runtime and the outbox relay, on one broker.

Every figure comes from the same run on the same topic: ``bench`` publishes the
events once, then reads them back several times, each time as a new consumer
group from the start of the topic:

* raw consume: the ceiling. On Kafka a bare aiokafka consumer in its own group
  (no decode, no database, no commit); on the embedded log the bus port's own
  consumer, polling.
* runtime: ``EventConsumer`` with a batch handler that upserts one row per event
  (one statement per partition chunk) plus the inbox, in one transaction per chunk,
  offsets committed after it.

Both consume rates are the whole topic over the time from starting the consumer
(joining the group included) to the last record read, or applied and committed.

Two figures are CPU per event in this process, without IO (best of 5 runs):

* decode: ``from_kafka`` of one bench event.
* encode: what a command's outbox staging costs per event: its envelope in the
  command's scope (``envelope_of``: id, time), the current trace context stamped on
  it, ``to_kafka`` and the row's header JSON (``outbox_rows``), for 100 events of one
  scope at a time; the INSERT itself is not counted.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
import timeit
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, func, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_events.codec import from_kafka, to_kafka
from dunning_runtime import heap
from dunning_runtime.bus import EmbeddedBus, KafkaBus, create_bus
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database
from dunning_runtime.outbox import Outbox, OutboxRelay, outbox_rows
from dunning_runtime.scope import Scope, envelope_of
from dunning_runtime.settings import ServiceSettings
from dunning_runtime.tls import kafka_client_options
from tests.support import ledger
from tests.support.events import message, overdue

KEYS = 2_000
PUBLISH_BATCH = 500
CONSUME_BATCH = 500
OUTBOX_PER_TRANSACTION = 100

metadata = MetaData()
#: What the bench's batch handler writes: one row per event, upserted.
rows = Table(
    "bench_rows",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("account", String(200), nullable=False),
    Column("seq", Integer, nullable=False),
)

# PostgreSQL: the whole chunk as three arrays, one statement whatever its length.
_PG_UPSERT = text(
    "INSERT INTO bench_rows (event_id, account, seq) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:accounts AS text[]), CAST(:seqs AS int[])) "
    "ON CONFLICT (event_id) DO UPDATE SET account = excluded.account, seq = excluded.seq"
)
_SQLITE_INSERT = sqlite_insert(rows)
_SQLITE_UPSERT = _SQLITE_INSERT.on_conflict_do_update(
    index_elements=[rows.c.event_id],
    set_={"account": _SQLITE_INSERT.excluded.account, "seq": _SQLITE_INSERT.excluded.seq},
)


def _seq(envelope: Envelope) -> int:
    return int(getattr(envelope.data, "days_past_due", 0))


async def upsert_rows(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """The bench's batch handler: one upsert statement for the chunk."""
    if not envelopes:
        return
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            _PG_UPSERT,
            {
                "ids": [e.id for e in envelopes],
                "accounts": [e.subject for e in envelopes],
                "seqs": [_seq(e) for e in envelopes],
            },
        )
    else:
        await session.execute(
            _SQLITE_UPSERT,
            [{"event_id": e.id, "account": e.subject, "seq": _seq(e)} for e in envelopes],
        )


async def drop_schema(settings: ServiceSettings) -> None:
    """Drop the run's PostgreSQL schema, so runs leave no tables behind."""
    if not settings.effective_schema:
        return
    database = Database.from_settings(settings)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.effective_schema}" CASCADE'))
    finally:
        await database.dispose()


async def drop_topics(settings: ServiceSettings) -> None:
    """Delete the run's Kafka topics (every topic under its prefix), so runs do not pile
    up topics on a shared broker."""
    if settings.is_embedded_bus:
        return  # the embedded log lives in the run's temporary directory
    admin = AIOKafkaAdminClient(
        **kafka_client_options(settings), bootstrap_servers=",".join(settings.kafka_bootstrap)
    )
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median_rate(count: int, seconds: list[float]) -> float:
    """Events per second of the median repetition."""
    return count / statistics.median(seconds)


async def run(
    events: int, repeat: int, data_dir: Path, profile: Path | None = None
) -> dict[str, Any]:
    """Publish ``events`` once, then time raw and runtime consumption ``repeat`` times each;
    returns the figures. With ``profile``, one more runtime run is profiled (pyinstrument)
    and its call tree written there; that run does not count in the figures."""
    settings = ServiceSettings(
        service_name="bench",
        data_dir=data_dir,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        database_schema=f"bench_{uuid.uuid4().hex[:8]}",
    )
    figures: dict[str, Any] = {"events": events, "repetitions": repeat}
    bus = create_bus(settings)
    await bus.start()
    database = Database.from_settings(settings)
    try:
        await bus.ensure_topics([topics.INVOICES])
        await database.migrate(ledger.VERSIONS)
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        envelopes = [overdue(f"acc-{i % KEYS:04d}", i // KEYS + 1) for i in range(events)]

        figures["decode_us_per_event"] = decode_micros(envelopes[0])
        figures["encode_us_per_event"] = encode_micros(envelopes[:100])

        started = time.perf_counter()
        for start in range(0, events, PUBLISH_BATCH):
            await bus.publish([message(e) for e in envelopes[start : start + PUBLISH_BATCH]])
        figures["publish_events_per_s"] = events / (time.perf_counter() - started)

        # What a service does once it has started (dunning_runtime.heap).
        heap.settle()
        raw = [await raw_consume(bus, events, rep) for rep in range(repeat)]
        figures["raw_consume_events_per_s"] = median_rate(events, raw)
        if isinstance(bus, KafkaBus):
            one_by_one = [
                await _bare_aiokafka(bus, events, rep, batched=False) for rep in range(repeat)
            ]
            figures["raw_consume_one_by_one_events_per_s"] = median_rate(events, one_by_one)

        figures["runtime_handler"] = "batch handler, one upsert per chunk"
        cpu_before = _cpu_seconds()
        runtime = [await runtime_consume(bus, database, events, rep) for rep in range(repeat)]
        figures["runtime_cpu_us_per_event"] = (
            (_cpu_seconds() - cpu_before) / (events * repeat) * 1e6
        )
        figures["runtime_events_per_s"] = median_rate(events, runtime)
        figures["runtime_vs_raw_consume"] = (
            figures["runtime_events_per_s"] / figures["raw_consume_events_per_s"]
        )
        if profile is not None:
            await profiled(profile, runtime_consume(bus, database, events, repeat))

        outbox = Outbox()
        started = time.perf_counter()
        for start in range(0, events, OUTBOX_PER_TRANSACTION):
            async with database.transaction() as session:
                await outbox.add(session, *envelopes[start : start + OUTBOX_PER_TRANSACTION])
        figures["outbox_write_events_per_s"] = events / (time.perf_counter() - started)
        relay = OutboxRelay(database, bus, outbox, service="bench")
        started = time.perf_counter()
        published = await relay.flush()
        figures["relay_events_per_s"] = published / (time.perf_counter() - started)
    finally:
        await bus.close()
        await database.dispose()
        await drop_schema(settings)
        await drop_topics(settings)
    return figures


async def profiled(path: Path, run: Awaitable[float]) -> None:
    """Run ``run`` under pyinstrument, sampling every frame on the event loop's thread."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        seconds = await run
    finally:
        profiler.stop()
    text = profiler.output_text(unicode=False, color=False, short_mode=False)
    await asyncio.to_thread(path.write_text, f"profiled runtime run: {seconds:.2f} s\n{text}")


def decode_micros(envelope: Envelope) -> float:
    """CPU µs per ``from_kafka`` of one bench event (best of 5 runs of 5,000)."""
    record = to_kafka(envelope)
    number = 5_000
    best = min(
        timeit.repeat(
            lambda: from_kafka(record.key, record.value, record.headers),
            number=number,
            repeat=5,
            timer=time.process_time,
        )
    )
    return best / number * 1e6


#: A current span's trace context, as ``current_trace_headers`` gives it when tracing is on.
_TRACE_HEADERS = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def encode_micros(envelopes: Sequence[Envelope]) -> float:
    """CPU µs per event of staging ``envelopes``' payloads as one command does (a scope's
    envelopes, traced, encoded into outbox rows; best of 5 runs of 50 batches)."""
    now = envelopes[0].time
    scope = Scope("acme", now, Outbox(), "/bench")
    events = [e.data for e in envelopes]

    def stage() -> None:
        outbox_rows([envelope_of(scope, e) for e in events], _TRACE_HEADERS, now)

    number = 50
    best = min(timeit.repeat(stage, number=number, repeat=5, timer=time.process_time))
    return best / (number * len(events)) * 1e6


async def raw_consume(bus: EmbeddedBus | KafkaBus, events: int, rep: int) -> float:
    """Seconds to read ``events`` records with nothing on top: the ceiling."""
    if isinstance(bus, KafkaBus):
        return await _bare_aiokafka(bus, events, rep)
    started = time.perf_counter()
    consumer = bus.consumer(f"bench-raw-{rep}", [topics.INVOICES])
    await consumer.start()
    try:
        return await _timed_reads(lambda: consumer.poll(1.0, CONSUME_BATCH), events, started)
    finally:
        await consumer.stop()


async def _bare_aiokafka(bus: KafkaBus, events: int, rep: int, *, batched: bool = True) -> float:
    """``getmany`` batches as the runtime reads them or, not ``batched``, the loop of
    aiokafka's README (``async for record in consumer``)."""
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(
        bus.physical(topics.INVOICES),
        **bus.client_options,
        bootstrap_servers=bus.bootstrap,
        group_id=f"{bus.topic_prefix}bench-bare-{'batched' if batched else 'single'}-{rep}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        if not batched:
            seen = 0
            async with asyncio.timeout(300):
                async for _record in consumer:
                    seen += 1
                    if seen >= events:
                        break
            return time.perf_counter() - started

        async def read() -> list[Any]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=CONSUME_BATCH)
            return [record for batch in batches.values() for record in batch]

        return await _timed_reads(read, events, started)
    finally:
        await consumer.stop()


async def _timed_reads(
    read: Callable[[], Awaitable[Sequence[Any]]], events: int, started: float
) -> float:
    seen = 0
    deadline = time.monotonic() + 300
    while seen < events:
        if time.monotonic() > deadline:
            raise TimeoutError(f"raw consume read {seen} of {events} records")
        seen += len(await read())
    return time.perf_counter() - started


async def runtime_consume(
    bus: EmbeddedBus | KafkaBus, database: Database, events: int, rep: int
) -> float:
    """Seconds for ``EventConsumer`` to apply ``events`` events with the upsert handler."""
    async with database.transaction() as session:
        await session.execute(delete(rows))
    applied = 0
    done = asyncio.Event()

    async def batch_handler(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        nonlocal applied
        await upsert_rows(session, envelopes)
        applied += len(envelopes)
        if applied >= events:
            done.set()

    group = f"bench-runtime-{rep}"
    subscription = Subscription(group, (topics.INVOICES,), batch_handler=batch_handler)
    consumer = EventConsumer(bus, database, subscription, batch_size=CONSUME_BATCH)
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run())
    try:
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait({task, waiter}, timeout=600, return_when=asyncio.FIRST_COMPLETED)
        if not done.is_set():
            waiter.cancel()
            if task.done():
                task.result()  # the consumer's own error
            raise TimeoutError(f"runtime applied {applied} of {events} events")
        # The handler ran for the last chunk; wait for its transaction to commit.
        for _ in range(60_000):
            if await _count(database) >= events:
                break
            await asyncio.sleep(0.005)
        else:
            raise TimeoutError("the last chunk did not commit")
        return time.perf_counter() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _count(database: Database) -> int:
    async with database.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(rows))).scalar_one())
