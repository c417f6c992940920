"""Tracing: a consumed event's trace context reaches the events its handler emits,
with tracing on (SDK spans, exported) and off (the API's no-op tracer, no SDK)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from dunning_runtime.telemetry import consume_span, current_trace_headers, setup_tracing

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
