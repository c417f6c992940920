"""A real OTLP/HTTP trace receiver on a free local port, in a thread of the test process.

The services export with the OpenTelemetry SDK's ``OTLPSpanExporter`` (protobuf over
HTTP, ``POST /v1/traces``); this server answers as a collector would and decodes every
request with the protocol's own message types, so a test reads exactly what left the
process: names, attributes, events and status messages of every span.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span: the service that sent it, and every text it carries."""

    service: str
    name: str
    attributes: dict[str, str]
    events: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    status_message: str = ""

    def texts(self) -> Iterator[tuple[str, str]]:
        """``(where, text)`` of every name, attribute, event and status message."""
        yield "name", self.name
        for key, value in self.attributes.items():
            yield key, value
        for name, attributes in self.events:
            yield f"event {name}", name
            for key, value in attributes.items():
                yield f"event {name}: {key}", value
        if self.status_message:
            yield "status", self.status_message


def _text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "array_value":
        return " ".join(_text(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return " ".join(f"{kv.key}={_text(kv.value)}" for kv in value.kvlist_value.values)
    return str(getattr(value, kind))


def _attributes(pairs: Any) -> dict[str, str]:
    return {pair.key: _text(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


class OtlpReceiver:
    """``with OtlpReceiver() as receiver:`` point ``DUNNING_OTLP_ENDPOINT`` at
    ``receiver.url``; ``receiver.spans`` holds every span received so far."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver._receive(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads spans, not the receiver's access log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        """The endpoint to export to (the exporter appends ``/v1/traces``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            service = _attributes(resource_spans.resource.attributes).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            attributes=_attributes(span.attributes),
                            events=[(e.name, _attributes(e.attributes)) for e in span.events],
                            status_message=span.status.message,
                        )
                    )
        with self._lock:
            self.spans.extend(spans)
            self.requests += 1

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
