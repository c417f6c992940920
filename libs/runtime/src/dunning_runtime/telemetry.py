"""Traces and metrics: W3C trace context across HTTP and events (principle 9).

Spans are exported over OTLP/HTTP when ``DUNNING_OTLP_ENDPOINT`` is set. Event
headers carry ``traceparent``/``tracestate``; a consumer starts its "process"
span as the child of the context read from them, so an ERP call, the events it
caused and their effects share one trace. We propagate by hand rather than with
opentelemetry-instrumentation-aiokafka because that instrumentation ends its
consumer span before the handler runs (opentelemetry-python-contrib #3465) and
does not cover the embedded log, which must carry the same headers.

With no exporter configured no SDK tracer provider is installed: the API's no-op
tracer then costs next to nothing per span (the SDK's cost ~90 µs per consumed
event with nowhere to send it), and it still passes the producer's trace context
through, so events a handler emits keep the trace of the event it consumed.

Spans (docs/observability.md): ``<topic> publish`` (PRODUCER, one per event the outbox
relay publishes; the record's ``traceparent`` header then names it, while the event's
own ``ce_traceparent`` keeps the span that caused the event), ``<topic> process``
(CONSUMER; a batch's span links every event of the chunk), and spans for work the clock
causes, which start a trace of their own linked to the context stored with the row the
work acts on (``clock_span``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from dunning_runtime.bus.port import OutgoingMessage
from dunning_runtime.logs import scrub

if TYPE_CHECKING:
    from dunning_events import Envelope

log = logging.getLogger(__name__)

_provider: TracerProvider | None = None
# Exporters (and OTLP endpoints) already attached, so that a second app in one
# process (tests, `make run`) does not export every span twice.
_attached: set[int | str] = set()


def setup_tracing(
    service_name: str, otlp_endpoint: str, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Export spans to ``otlp_endpoint`` (batched) and/or to ``exporter`` (span by span,
    as tests and debugging want); returns the SDK tracer provider, or None when
    neither is given and tracing stays the API's no-op.

    The provider is installed once per process, with the first service's name; later
    calls add their exporter to it.
    """
    global _provider
    processors: list[tuple[int | str, Any]] = []
    if otlp_endpoint and otlp_endpoint not in _attached:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/") + "/v1/traces"
        processors.append((otlp_endpoint, BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))))
    if exporter is not None and id(exporter) not in _attached:
        processors.append((id(exporter), SimpleSpanProcessor(exporter)))
    if not processors:
        return _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(_provider)
    for key, processor in processors:
        _provider.add_span_processor(processor)
        _attached.add(key)
    return _provider


#: Span attributes the HTTP instrumentations fill with the request's URL (old and new
#: semantic conventions): a path may name a contact (``/v1/contacts/{address}``).
URL_ATTRIBUTES = ("http.target", "http.url", "url.path", "url.full", "url.query")


def scrub_url_attributes(span: Span, *_request: Any) -> None:
    """Mask email addresses and phone numbers in ``span``'s URL attributes, as the logs do.

    The request hook of the FastAPI and httpx instrumentations: they record the URL as
    requested, while the span's name and ``http.route`` keep the route template.
    """
    attributes = getattr(span, "attributes", None)
    if not span.is_recording() or not attributes:
        return
    for key in URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            masked = scrub(value)
            if masked != value:
                span.set_attribute(key, masked)


def tracer() -> trace.Tracer:
    """The platform's tracer."""
    return trace.get_tracer("dunning")


def tracing_enabled() -> bool:
    """Whether spans are recorded (an SDK provider is installed): spans only worth
    making when someone looks are skipped otherwise."""
    return _provider is not None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span, None outside any trace."""
    return current_trace_headers().get("traceparent")


def context_of(traceparent: str | None, tracestate: str | None = None) -> otel_context.Context:
    """The context a stored ``traceparent`` names (an empty context for None or junk)."""
    carrier = {"traceparent": traceparent or ""}
    if tracestate:
        carrier["tracestate"] = tracestate
    return propagate.extract(carrier) if traceparent else otel_context.Context()


def links_to(traceparents: Iterable[str | None]) -> list[Link]:
    """Span links to the valid, distinct contexts among ``traceparents``."""
    links: list[Link] = []
    seen: set[tuple[int, int]] = set()
    for traceparent in traceparents:
        span_context = trace.get_current_span(context_of(traceparent)).get_span_context()
        key = (span_context.trace_id, span_context.span_id)
        if span_context.is_valid and key not in seen:
            seen.add(key)
            links.append(Link(span_context))
    return links


def traceparent_of(span: Span) -> str:
    """``span``'s context as a W3C ``traceparent``."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier["traceparent"]


def with_trace_of(envelope: Envelope, span: Span | None) -> Envelope:
    """``envelope`` caused by ``span`` (its ``traceparent``), unchanged when ``span`` is
    None or not recording (tracing off: the outbox stamps the current context)."""
    if span is None or not span.is_recording():
        return envelope
    return envelope.model_copy(update={"traceparent": traceparent_of(span), "tracestate": None})


def start_clock_span(name: str, caused_by: Iterable[str | None], **attributes: Any) -> Span:
    """A span for work the clock caused (overdue detection, a timer), not yet current
    and to be ended by the caller: the root of a trace of its own, linked to the
    contexts in ``caused_by`` (the stored ``traceparent`` of what it acts on), so one
    can follow links from the request that created a row to what its due date did."""
    return tracer().start_span(
        name,
        context=otel_context.Context(),  # no parent: a new trace
        kind=SpanKind.INTERNAL,
        links=links_to(caused_by),
        attributes=attributes,
    )


def current_trace_headers() -> dict[str, str]:
    """``traceparent``/``tracestate`` of the current span, empty when there is none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_headers(headers: list[tuple[str, bytes]]) -> otel_context.Context:
    """The trace context carried in event headers."""
    carrier = {k: v.decode("latin-1") for k, v in headers if k in ("traceparent", "tracestate")}
    return propagate.extract(carrier)


@contextmanager
def publish_spans(messages: Sequence[OutgoingMessage]) -> Iterator[list[OutgoingMessage]]:
    """One ``<topic> publish`` PRODUCER span per message, child of the context in its
    ``traceparent`` header (the span that caused the event, as the outbox stored it);
    yields the messages with that header naming the producer span, so a consumer's span
    becomes the producer span's child. ``ce_traceparent`` keeps the causing span.

    With tracing off the messages pass through unchanged. A failed publish marks every
    span of the batch with the error."""
    if _provider is None:
        yield list(messages)
        return
    spans: list[Span] = []
    traced: list[OutgoingMessage] = []
    for message in messages:
        headers = dict(message.headers)
        span = tracer().start_span(
            f"{message.topic} publish",
            context=context_from_headers(message.headers),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": message.topic,
                "messaging.message.id": headers.get("ce_id", b"").decode("latin-1"),
                "cloudevents.event_type": headers.get("ce_type", b"").decode("latin-1"),
                "dunning.tenant": headers.get("ce_tenant", b"").decode("latin-1"),
            },
        )
        spans.append(span)
        own = traceparent_of(span).encode()
        traced.append(
            OutgoingMessage(
                topic=message.topic,
                key=message.key,
                value=message.value,
                headers=[(k, own if k == "traceparent" else v) for k, v in message.headers]
                + ([] if "traceparent" in headers else [("traceparent", own)]),
            )
        )
    try:
        yield traced
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()


@contextmanager
def consume_span(
    topic: str, group: str, headers: list[tuple[str, bytes]], **attributes: Any
) -> Iterator[Span]:
    """A consumer "process" span, child of the producer's context from ``headers``."""
    with _process_span(topic, group, headers, (), attributes) as span:
        yield span


@contextmanager
def batch_span(
    topic: str, group: str, chunk: Sequence[list[tuple[str, bytes]]], **attributes: Any
) -> Iterator[Span]:
    """The "process" span of a chunk applied at once (``chunk``: each event's headers):
    child of the first event's producer context, linked to every event's, as the
    messaging conventions ask of batch processing."""
    with _process_span(topic, group, chunk[0], chunk, attributes) as span:
        yield span


@contextmanager
def _process_span(
    topic: str,
    group: str,
    headers: list[tuple[str, bytes]],
    linked: Sequence[list[tuple[str, bytes]]],
    attributes: dict[str, Any],
) -> Iterator[Span]:
    ctx = context_from_headers(headers)
    if _provider is None:
        # No-op tracing: make the producer's context current (for the handler's
        # outgoing events) without building a span's attributes.
        token = otel_context.attach(ctx)
        try:
            yield trace.get_current_span(ctx)
        finally:
            otel_context.detach(token)
        return
    with tracer().start_as_current_span(
        f"{topic} process",
        context=ctx,
        kind=SpanKind.CONSUMER,
        links=links_to(dict(h).get("traceparent", b"").decode("latin-1") or None for h in linked),
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
            **attributes,
        },
    ) as span:
        yield span
