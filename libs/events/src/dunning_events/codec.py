"""Codecs: the CloudEvents Kafka protocol binding (binary mode) and structured JSON.

Binary mode keeps the payload as plain JSON in the message value and the
context attributes in ``ce_*`` headers, so subscribers that ignore CloudEvents
still read a clean payload. The binding is written here from the spec rather
than through the ``cloudevents`` package: that package wants its own event
type holding a dict, while our contract is the pydantic envelope; a test
checks that the package reads what we write.

Every decode failure is a ``DecodeError`` whose reason names the field, never
another exception, so a consumer can dead-letter the event and move on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from dunning_events.envelope import Envelope, Event
from dunning_events.registry import EVENT_TYPES

CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
_REQUIRED = ("specversion", "id", "type", "source", "time", "subject", "tenant", "schemaversion")
_OPTIONAL = ("dataschema", "traceparent", "tracestate")


@dataclass(frozen=True, slots=True)
class KafkaMessage:
    """A Kafka record's key, value and headers."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class DecodeError(ValueError):
    """An event that cannot be decoded; ``reason`` says why, naming the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _attribute_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def to_kafka(envelope: Envelope) -> KafkaMessage:
    """The envelope in binary content mode: ``ce_*`` headers, JSON data as the value."""
    headers: list[tuple[str, bytes]] = []
    for name in (*_REQUIRED, *_OPTIONAL):
        value = getattr(envelope, name)
        if value is not None:
            headers.append((f"ce_{name}", _attribute_text(value).encode()))
    headers.append(("content-type", CONTENT_TYPE.encode()))
    # Plain W3C headers too: propagators and Kafka tooling look for these names.
    if envelope.traceparent:
        headers.append(("traceparent", envelope.traceparent.encode()))
    if envelope.tracestate:
        headers.append(("tracestate", envelope.tracestate.encode()))
    return KafkaMessage(
        key=envelope.partition_key.encode(),
        value=envelope.data.model_dump_json().encode(),
        headers=headers,
    )


def _reason(exc: ValidationError, prefix: str) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        parts.append(f"{loc or 'value'}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _build(attributes: dict[str, Any], data: Any, *, data_is_json_text: bool) -> Envelope:
    type_ = attributes.get("type")
    cls: type[Event] | None = EVENT_TYPES.get(type_) if isinstance(type_, str) else None
    if cls is None:
        raise DecodeError(f"type: unknown event type {type_!r}")
    try:
        payload = cls.model_validate_json(data) if data_is_json_text else cls.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(_reason(exc, "data")) from None
    try:
        return Envelope.model_validate({**attributes, "data": payload})
    except ValidationError as exc:
        raise DecodeError(_reason(exc, "")) from None
    except ValueError as exc:
        raise DecodeError(str(exc)) from None


def from_kafka(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> Envelope:
    """Decode a binary-mode record; raises ``DecodeError`` for anything malformed."""
    attributes: dict[str, Any] = {}
    for name, raw in headers:
        if name.startswith("ce_"):
            try:
                attributes[name[3:]] = bytes(raw).decode("utf-8")
            except (UnicodeDecodeError, TypeError):
                raise DecodeError(f"header {name}: not UTF-8 text") from None
    missing = [name for name in _REQUIRED if name not in attributes]
    if missing:
        raise DecodeError(f"missing CloudEvents header(s): {', '.join('ce_' + m for m in missing)}")
    if value is None:
        raise DecodeError("data: the record has no value")
    envelope = _build(attributes, value, data_is_json_text=True)
    if key is not None and key != envelope.partition_key.encode():
        raise DecodeError(f"key: {key!r} does not match tenant:subject {envelope.partition_key!r}")
    return envelope


def to_json(envelope: Envelope) -> bytes:
    """The envelope in structured content mode (``application/cloudevents+json``)."""
    return envelope.model_dump_json(exclude_none=True).encode()


def from_json(raw: bytes | str) -> Envelope:
    """Decode a structured-mode event; raises ``DecodeError`` for anything malformed."""
    try:
        document = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError("an event must be a JSON object")
    attributes = {k: v for k, v in document.items() if k != "data"}
    if "data" not in document:
        raise DecodeError("data: missing")
    return _build(attributes, document["data"], data_is_json_text=False)
