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
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind

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


def tracer() -> trace.Tracer:
    """The platform's tracer."""
    return trace.get_tracer("dunning")


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
def consume_span(
    topic: str, group: str, headers: list[tuple[str, bytes]], **attributes: Any
) -> Iterator[Span]:
    """A consumer "process" span, child of the producer's context from ``headers``."""
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
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
            **attributes,
        },
    ) as span:
        yield span
