"""Traces and metrics: W3C trace context across HTTP and events (principle 9).

Spans are exported over OTLP/HTTP when ``DUNNING_OTLP_ENDPOINT`` is set. Event
headers carry ``traceparent``/``tracestate``; a consumer starts its "process"
span as the child of the context read from them, so an ERP call, the events it
caused and their effects share one trace. We propagate by hand rather than with
opentelemetry-instrumentation-aiokafka because that instrumentation ends its
consumer span before the handler runs (opentelemetry-python-contrib #3465) and
does not cover the embedded log, which must carry the same headers.
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
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind

log = logging.getLogger(__name__)

_configured = False


def setup_tracing(
    service_name: str, otlp_endpoint: str, exporter: SpanExporter | None = None
) -> None:
    """Install the global tracer provider once per process."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True


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
