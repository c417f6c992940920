"""W3C trace context survives the hop from producer to consumer: the relay's producer
span sits between the span that caused an event and the consumer's span, and a batch
consumer's span links every event of its chunk."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.outbox import Outbox, OutboxRelay
from dunning_runtime.telemetry import setup_tracing, tracer
from tests.bus.test_dead_letter import run_until
from tests.bus.test_outbox import open_ledger
from tests.support import ledger
from tests.support.events import overdue


def _exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    setup_tracing("tests", "", exporter=exporter)
    assert isinstance(trace.get_tracer_provider(), TracerProvider)
    return exporter


async def test_the_consumer_span_is_the_child_of_the_relays_producer_span(
    settings_factory,
) -> None:
    exporter = _exporter()
    database, bus = await open_ledger(settings_factory("ledger"))
    outbox = Outbox()
    with tracer().start_as_current_span("POST /v1/invoices") as request_span:
        async with database.transaction() as session:
            await outbox.add(session, overdue("acc-t", 1))
    request = request_span.get_span_context()
    await OutboxRelay(database, bus, outbox, service="ledger").flush()

    seen: list[tuple[int, list[str]]] = []

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        assert envelope.traceparent is not None
        ids = envelope.traceparent.split("-")[1:3]
        seen.append((trace.get_current_span().get_span_context().trace_id, ids))
        await ledger.apply_event(session, envelope)

    consumer = EventConsumer(bus, database, Subscription("ledger", (topics.INVOICES,), handler))
    await run_until(consumer, database, 1)
    await bus.close()
    await database.dispose()

    # The event itself still names the span that caused it (ce_traceparent).
    assert seen == [(request.trace_id, [f"{request.trace_id:032x}", f"{request.span_id:016x}"])]
    spans = exporter.get_finished_spans()
    [publish] = [s for s in spans if s.name == "invoices publish"]
    [process] = [s for s in spans if s.name == "invoices process"]
    assert publish.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert publish.parent is not None and publish.parent.span_id == request.span_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == publish.context.trace_id == request.trace_id
    assert publish.attributes is not None
    assert publish.attributes["messaging.destination.name"] == "invoices"
    assert publish.attributes["messaging.operation.type"] == "send"
    assert publish.attributes["cloudevents.event_type"] == "dunning.InvoiceOverdue.v1"
    assert process.attributes and process.attributes["messaging.consumer.group.name"] == "ledger"


async def test_a_batch_span_links_every_event_of_its_chunk(settings_factory) -> None:
    exporter = _exporter()
    database, bus = await open_ledger(settings_factory("ledger"))
    outbox = Outbox()
    causes = []
    for seq in range(1, 4):  # three events, each caused in a trace of its own
        with tracer().start_as_current_span(f"cause {seq}") as cause:
            async with database.transaction() as session:
                await outbox.add(session, overdue("acc-b", seq))
        causes.append(cause.get_span_context().trace_id)
    await OutboxRelay(database, bus, outbox, service="ledger").flush()

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            await ledger.apply_event(session, envelope)

    consumer = EventConsumer(
        bus, database, Subscription("ledger", (topics.INVOICES,), batch_handler=handle)
    )
    await run_until(consumer, database, 3)
    await bus.close()
    await database.dispose()

    spans = exporter.get_finished_spans()
    publishes = {s.context.span_id: s for s in spans if s.name == "invoices publish"}
    assert sorted(s.context.trace_id for s in publishes.values()) == sorted(causes)
    batches = [s for s in spans if s.name == "invoices process" and s.context.trace_id in causes]
    linked = [link.context.span_id for b in batches for link in b.links]
    # Every event is linked once, to its own producer span, whatever the chunking.
    assert sorted(linked) == sorted(publishes)
    for batch in batches:
        assert batch.attributes is not None
        assert batch.attributes["messaging.batch.message_count"] == len(batch.links)
        assert batch.parent is not None and batch.parent.span_id in publishes
