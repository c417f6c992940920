"""Tracing: a consumed event's trace context reaches the events its handler emits,
with tracing on (SDK spans, exported) and off (the API's no-op tracer, no SDK)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from dunning_runtime.bus.port import OutgoingMessage
from dunning_runtime.telemetry import (
    consume_span,
    current_trace_headers,
    publish_spans,
    setup_tracing,
    start_clock_span,
    tracer,
)

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
HEADERS = [
    ("ce_id", b"evt-1"),
    ("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode()),
    ("tracestate", b"vendor=1"),
]


def test_without_an_exporter_no_sdk_is_installed_and_the_context_still_passes_through() -> None:
    # A fresh interpreter: in this one another test may have installed the SDK already.
    script = textwrap.dedent(
        f"""
        import json
        from opentelemetry import trace
        from dunning_runtime.telemetry import consume_span, current_trace_headers, setup_tracing

        installed = setup_tracing("svc", "")
        with consume_span("invoices", "grp", {HEADERS!r}) as span:
            inside = current_trace_headers()
            recording = span.is_recording()
        print(json.dumps({{
            "installed": installed is not None,
            "provider": type(trace.get_tracer_provider()).__name__,
            "inside": inside,
            "recording": recording,
            "after": current_trace_headers(),
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(done.stdout)
    assert result["installed"] is False
    assert result["provider"] == "ProxyTracerProvider"
    assert result["recording"] is False
    assert result["inside"] == {
        "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
        "tracestate": "vendor=1",
    }
    assert result["after"] == {}


def test_with_an_exporter_the_process_span_is_the_producers_child_and_is_exported_once() -> None:
    exporter = InMemorySpanExporter()
    assert setup_tracing("tests", "", exporter=exporter) is not None
    setup_tracing("tests", "", exporter=exporter)  # a second app in the same process

    with consume_span("invoices", "grp", HEADERS, **{"dunning.tenant": "acme"}) as span:
        inside = current_trace_headers()
        own_span_id = format(span.get_span_context().span_id, "016x")

    assert inside["traceparent"] == f"00-{TRACE_ID}-{own_span_id}-01"
    [process] = [s for s in exporter.get_finished_spans() if s.name == "invoices process"]
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None and format(process.parent.span_id, "016x") == PARENT_ID
    assert format(process.context.trace_id, "032x") == TRACE_ID
    assert process.attributes is not None
    assert process.attributes["messaging.consumer.group.name"] == "grp"
    assert process.attributes["dunning.tenant"] == "acme"


def test_an_event_without_trace_context_starts_no_trace_of_its_own_when_tracing_is_off() -> None:
    script = textwrap.dedent(
        """
        from dunning_runtime.telemetry import consume_span, current_trace_headers
        with consume_span("invoices", "grp", [("ce_id", b"evt-1")]):
            print(current_trace_headers())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "{}"


def test_a_producer_span_per_message_names_itself_in_the_header_and_keeps_the_cause() -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("tests", "", exporter=exporter)
    cause = f"00-{TRACE_ID}-{PARENT_ID}-01".encode()
    message = OutgoingMessage(
        "invoices",
        b"acme:A1",
        b"{}",
        [("ce_id", b"evt-1"), ("ce_traceparent", cause), ("traceparent", cause)],
    )
    with publish_spans([message]) as [traced]:
        pass
    [publish] = [s for s in exporter.get_finished_spans() if s.name == "invoices publish"]
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None and format(publish.parent.span_id, "016x") == PARENT_ID
    headers = dict(traced.headers)
    assert headers["ce_traceparent"] == cause  # the event still names what caused it
    assert headers["traceparent"].decode() == f"00-{TRACE_ID}-{publish.context.span_id:016x}-01"
    assert publish.attributes is not None
    assert publish.attributes["messaging.message.id"] == "evt-1"


def test_a_failed_publish_marks_its_producer_spans_with_the_error() -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("tests", "", exporter=exporter)
    message = OutgoingMessage("payments", b"k", b"{}", [("ce_id", b"evt-2")])
    with pytest.raises(ConnectionError), publish_spans([message]):
        raise ConnectionError("broker away")
    [publish] = [s for s in exporter.get_finished_spans() if s.name == "payments publish"]
    assert publish.status.status_code is StatusCode.ERROR
    assert publish.end_time is not None


def test_clock_work_starts_a_trace_linked_to_the_valid_stored_contexts_only() -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("tests", "", exporter=exporter)
    stored = f"00-{TRACE_ID}-{PARENT_ID}-01"
    with tracer().start_as_current_span("a sweep that happens to run inside a request"):
        span = start_clock_span("invoice overdue", [stored, stored, None, "junk"], x="1")
        span.end()
    [overdue] = [s for s in exporter.get_finished_spans() if s.name == "invoice overdue"]
    assert overdue.parent is None and format(overdue.context.trace_id, "032x") != TRACE_ID
    assert [
        (format(link.context.trace_id, "032x"), format(link.context.span_id, "016x"))
        for link in overdue.links
    ] == [(TRACE_ID, PARENT_ID)]
