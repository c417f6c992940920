"""W3C trace context survives the hop from producer to consumer."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.outbox import Outbox, OutboxRelay
from dunning_runtime.telemetry import setup_tracing, tracer
from tests.bus.test_dead_letter import run_until
from tests.bus.test_outbox import open_ledger
from tests.support import ledger
from tests.support.events import overdue


async def test_consumer_span_continues_the_producer_trace(settings_factory) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("tests", "", exporter=exporter)
    assert isinstance(trace.get_tracer_provider(), TracerProvider)

    database, bus = await open_ledger(settings_factory("ledger"))
    outbox = Outbox()
    with tracer().start_as_current_span("POST /v1/invoices") as request_span:
        async with database.transaction() as session:
            await outbox.add(session, overdue("acc-t", 1))
    producer_ctx = request_span.get_span_context()
    await OutboxRelay(database, bus, outbox, service="ledger").flush()

    seen: list[int] = []

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        assert envelope.traceparent is not None
        await ledger.apply_event(session, envelope)

    consumer = EventConsumer(bus, database, Subscription("ledger", (topics.INVOICES,), handler))
    await run_until(consumer, database, 1)
    await bus.close()
    await database.dispose()

    assert seen == [producer_ctx.trace_id]
    [process] = [s for s in exporter.get_finished_spans() if s.name == "invoices process"]
    assert process.parent is not None and process.parent.span_id == producer_ctx.span_id
    assert process.context.trace_id == producer_ctx.trace_id
    assert process.attributes and process.attributes["messaging.consumer.group.name"] == "ledger"
