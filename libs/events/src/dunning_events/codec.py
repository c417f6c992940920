"""Codecs: the CloudEvents Kafka protocol binding (binary content mode) and the
structured JSON format (``application/cloudevents+json``).

Binary mode keeps the payload as plain JSON in the record value and the context
attributes in ``ce_*`` headers, so subscribers that know nothing of CloudEvents
still read a clean payload, and the key ``tenant:account`` keeps one account's
events in order.

The binding is written here from the spec (CloudEvents Kafka Protocol Binding
1.0, section 3.2) rather than through the ``cloudevents`` package, because that
package does not fit cleanly: its Kafka message holds headers as a dict while
Kafka headers are a list that may repeat names; its events carry ``data`` as a
plain dict, so our pydantic payloads would be dumped and validated twice; its
module layout changed between 1.x and 2.x; and its decoders raise whatever the
underlying parsers raise, which we would have to translate anyway. The tests
check that the SDK and this module read each other's output.

Every decode failure is a ``DecodeError`` whose reason names the field, never
another exception, so a consumer can dead-letter the record and move on
(principle 10).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

import pydantic_core
from pydantic import TypeAdapter, ValidationError

from dunning_events.common import Instant
from dunning_events.envelope import Envelope, Event, assemble, trace_context_accepted
from dunning_events.mirror import validate_payload
from dunning_events.records import (
    REQUIRED_ATTRIBUTES,
    accepted_constants,
    decode_known,
    remember_record,
)
from dunning_events.registry import EVENT_TYPES

__all__ = [
    "CONTENT_TYPE",
    "REQUIRED_ATTRIBUTES",
    "STRUCTURED_CONTENT_TYPE",
    "DecodeError",
    "KafkaMessage",
    "from_json",
    "from_kafka",
    "to_json",
    "to_kafka",
]

CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
CE_PREFIX = "ce_"

_TRACE_ATTRIBUTES = ("traceparent", "tracestate")
# Attributes we decode. Others (extensions some tool added, e.g. partitionkey) are
# not part of this contract and are ignored, as CloudEvents lets receivers do.
_KNOWN_ATTRIBUTES = frozenset((*REQUIRED_ATTRIBUTES, *_TRACE_ATTRIBUTES, "datacontenttype"))
# The CloudEvents JSON format types attributes: Integer ones are JSON numbers,
# every other attribute we use is a JSON string.
_INTEGER_ATTRIBUTES = frozenset({"schemaversion"})
_REQUIRED = frozenset(REQUIRED_ATTRIBUTES)
# Header name -> attribute, for the attributes we decode.
_HEADER_ATTRIBUTES = {f"{CE_PREFIX}{name}": name for name in _KNOWN_ATTRIBUTES}
# The same, plus the other names to_kafka writes, for from_kafka's fast path.
_CONTENT_TYPE = "content-type"
_OTHER = "other"
_FAST_NAMES = {
    **_HEADER_ATTRIBUTES,
    "content-type": _CONTENT_TYPE,
    **dict.fromkeys(_TRACE_ATTRIBUTES, _OTHER),
}


@dataclass(frozen=True, slots=True)
class KafkaMessage:
    """A Kafka record's key, value and headers, independent of any client library."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


_new_message = object.__new__
# The slots of the frozen dataclass, set through their descriptors: what its __init__
# does through object.__setattr__, for the encoders' hot loops.
_set_key = KafkaMessage.__dict__["key"].__set__
_set_value = KafkaMessage.__dict__["value"].__set__
_set_headers = KafkaMessage.__dict__["headers"].__set__


def kafka_message(key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> KafkaMessage:
    """``KafkaMessage(key, value, headers)``, built faster."""
    message: KafkaMessage = _new_message(KafkaMessage)
    _set_key(message, key)
    _set_value(message, value)
    _set_headers(message, headers)
    return message


class DecodeError(ValueError):
    """A record or document that is not a valid event; ``reason`` says why, naming the
    field (e.g. "data.amount.amount: EUR allows at most 2 decimal places")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- encoding ------------------------------------------------------------------


def to_kafka(envelope: Envelope) -> KafkaMessage:
    """The envelope in binary content mode.

    Headers: ``ce_<attribute>`` for every attribute that is set (``ce_time`` in RFC
    3339), ``content-type: application/json``, and the trace context a second time
    as plain ``traceparent``/``tracestate``, the names W3C propagators and Kafka
    tooling look for. Key: ``tenant:account_id``. Value: the data as JSON, amounts
    as decimal strings.
    """
    values = envelope.__dict__
    data = values["data"]
    # The payload's own serializer, as model_dump_json() calls it, without the str round trip.
    return kafka_message(
        f"{values['tenant']}:{values['subject']}".encode(),
        data.__pydantic_serializer__.to_json(data),
        _cached_headers(values) or _headers(envelope),
    )


def _headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    """The ``to_kafka`` headers of ``envelope``, worked out from scratch."""
    # mode="json" gives the wire text of every attribute (time as RFC 3339, ints as
    # digits); datacontenttype travels as content-type, per the binding.
    attributes = envelope.model_dump(
        mode="json", exclude={"data", "datacontenttype"}, exclude_none=True
    )
    headers = [(f"{CE_PREFIX}{name}", str(value).encode()) for name, value in attributes.items()]
    headers.append(("content-type", CONTENT_TYPE.encode()))
    headers.extend(
        (name, attributes[name].encode()) for name in _TRACE_ATTRIBUTES if name in attributes
    )
    return headers


# The headers every event of one producer, class and instant shares, as _headers
# writes them: the header pairs of specversion, type, source, time, dataschema,
# tenant, schemaversion and content-type, by those attributes' values.
_CONSTANT_HEADERS: dict[tuple[Any, ...], tuple[Any, ...]] = {}
# The header names of an untraced event, in order (the required attributes are
# declared in the envelope's field order).
_CONSTANT_NAMES = (*(CE_PREFIX + name for name in REQUIRED_ATTRIBUTES), "content-type")
_CONSTANT_VALUES = itemgetter(
    "specversion", "type", "source", "time", "dataschema", "tenant", "schemaversion"
)


def _cached_headers(values: dict[str, Any]) -> list[tuple[str, bytes]] | None:
    """``_headers`` of the envelope with these field values, the constant pairs from a
    cache; None where only ``_headers`` can tell (odd types that validation never gives)."""
    ident, subject, time = values["id"], values["subject"], values["time"]
    traceparent, tracestate = values["traceparent"], values["tracestate"]
    if (
        type(ident) is not str
        or type(subject) is not str
        or type(time) is not datetime
        or type(values["schemaversion"]) is not int
        or (tracestate is not None and traceparent is None)
    ):
        return None
    try:
        key = _CONSTANT_VALUES(values)
        cached = _CONSTANT_HEADERS.get(key)
    except TypeError:  # an unhashable value, which only model_construct lets in
        return None
    # Equal aware datetimes may differ in their offset, and so in their text.
    offset = time.utcoffset()
    if cached is None or cached[0] != offset:
        cached = _remember_headers(key, offset, values)
        if cached is None:
            return None
    headers = [
        cached[1],
        ("ce_id", ident.encode()),
        cached[2],
        cached[3],
        cached[4],
        ("ce_subject", subject.encode()),
        cached[5],
        cached[6],
        cached[7],
    ]
    if traceparent is None:
        headers.append(cached[8])
        return headers
    trace = [("traceparent", traceparent.encode())]
    if tracestate is not None:
        trace.append(("tracestate", tracestate.encode()))
    return [*headers, *[(CE_PREFIX + name, raw) for name, raw in trace], cached[8], *trace]


def _remember_headers(
    key: tuple[Any, ...], offset: object, values: dict[str, Any]
) -> tuple[Any, ...] | None:
    plain = {**values, "traceparent": None, "tracestate": None}
    headers = _headers(assemble(plain, set(plain)))
    if tuple(name for name, _ in headers) != _CONSTANT_NAMES:
        return None
    cached = (offset, *(pair for pair in headers if pair[0] not in ("ce_id", "ce_subject")))
    if len(_CONSTANT_HEADERS) >= 1024:
        _CONSTANT_HEADERS.clear()
    _CONSTANT_HEADERS[key] = cached
    return cached


def to_json(envelope: Envelope) -> bytes:
    """The envelope in structured content mode (``application/cloudevents+json``).

    Unset optional attributes are left out, as the JSON format asks; the data keeps
    its nulls, so it is the same JSON as in binary mode.
    """
    document = envelope.model_dump(mode="json", exclude={"data"}, exclude_none=True)
    document["data"] = envelope.data.model_dump(mode="json")
    return pydantic_core.to_json(document)


# -- decoding ------------------------------------------------------------------


def from_kafka(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]]
) -> Envelope:
    """Decode a record written by ``to_kafka``; raises ``DecodeError`` for anything
    malformed: missing or repeated ``ce_`` headers, an unknown type, a value that is
    not JSON or not a valid payload, a key that is not ``tenant:account_id``.

    A record in structured mode (content-type ``application/cloudevents+json``) is
    read too, the way the binding says receivers should tell the two apart.
    """
    # A record in to_kafka's layout whose constant headers were accepted before: only
    # what varies is checked (records.py); anything else is decided below.
    envelope = decode_known(key, value, headers)
    if envelope is not None:
        return envelope
    envelope = _decoded(key, value, headers)
    remember_record(value, headers, envelope)
    return envelope


def _decoded(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]]
) -> Envelope:
    """``from_kafka`` by validation, the authority on every verdict and reason."""
    # One pass over the headers, the payload validated once from its bytes, the
    # envelope validated once.
    attributes, content_type = _read_headers(headers)
    if value is not None and not isinstance(value, (bytes, bytearray, memoryview)):
        raise DecodeError("value: not bytes")
    media_type = (
        CONTENT_TYPE
        if content_type is None or content_type == CONTENT_TYPE
        else content_type.split(";")[0].strip().lower()
    )
    if media_type == STRUCTURED_CONTENT_TYPE:
        if value is None:
            raise DecodeError("value: a structured-mode record has no value")
        envelope = from_json(bytes(value))
    else:
        if media_type != CONTENT_TYPE:
            raise DecodeError(f"content-type: expected {CONTENT_TYPE}, got {content_type!r}")
        if not attributes.keys() >= _REQUIRED:
            _require(attributes, "header(s)", prefix=CE_PREFIX)
        if value is None:
            raise DecodeError("data: the record has no value")
        envelope = _envelope(attributes, value if type(value) is bytes else bytes(value))
    _check_key(key, envelope)
    return envelope


def _read_headers(
    headers: Iterable[tuple[str, bytes | None]],
) -> tuple[dict[str, Any], str | None]:
    """The ``ce_`` attributes of a record's headers, and its content-type if it has one."""
    attributes: dict[str, Any] = {}
    content_type: str | None = None
    try:
        pairs = iter(headers)
    except TypeError:
        raise DecodeError("headers: not a list of (name, value) pairs") from None
    for pair in pairs:
        # What producers write (a tuple of a lower-case name and bytes) in as few steps
        # as possible; anything else, and every error, takes the general path below.
        if type(pair) is tuple and len(pair) == 2:
            name, raw = pair
            attribute = _FAST_NAMES.get(name) if type(name) is str else None
            if attribute is not None and type(raw) is bytes:
                if attribute is _OTHER:
                    continue
                if attribute is _CONTENT_TYPE:
                    content_type = _header_text(name, raw)
                    continue
                if attribute not in attributes:
                    try:
                        attributes[attribute] = raw.decode()
                    except UnicodeDecodeError:
                        raise DecodeError(f"header {name}: not UTF-8 text") from None
                    continue
        # type() first: exact tuples and str are what clients hand us, and cheaper to test.
        if (
            (type(pair) is not tuple and not isinstance(pair, tuple))
            or len(pair) != 2
            or not isinstance(pair[0], str)
        ):
            raise DecodeError(f"headers: {pair!r:.60} is not a (name, value) pair")
        name, raw = pair
        # Producers write lower-case names; other spellings take the slower path.
        attribute = _HEADER_ATTRIBUTES.get(name)
        if attribute is None:
            lowered = name.lower()
            if lowered == "content-type":
                content_type = _header_text(name, raw)
                continue
            attribute = _HEADER_ATTRIBUTES.get(lowered)
            if attribute is None:
                continue
        if attribute in attributes:
            raise DecodeError(f"header {name}: appears more than once")
        if type(raw) is bytes:
            try:
                attributes[attribute] = raw.decode()
            except UnicodeDecodeError:
                raise DecodeError(f"header {name}: not UTF-8 text") from None
        else:
            attributes[attribute] = _header_text(name, raw)
    return attributes, content_type


def from_json(raw: bytes | str) -> Envelope:
    """Decode a structured-mode document written by ``to_json``; raises ``DecodeError``
    for anything malformed, like ``from_kafka``."""
    try:
        # allow_inf_nan=False: NaN and Infinity are not JSON.
        document = pydantic_core.from_json(raw, allow_inf_nan=False)
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError("an event must be a JSON object")
    if "data_base64" in document:
        raise DecodeError("data_base64: events carry JSON data, not binary")
    if "data" not in document:
        raise DecodeError("data: missing")
    attributes = {k: v for k, v in document.items() if k in _KNOWN_ATTRIBUTES}
    _require(attributes, "attribute(s)")
    for name, attribute in attributes.items():
        expected: type = int if name in _INTEGER_ATTRIBUTES else str
        # bool is an int to Python, but true is not a version number.
        if not isinstance(attribute, expected) or isinstance(attribute, bool):
            kind = "an integer" if expected is int else "a string"
            raise DecodeError(f"{name}: must be {kind}, got {attribute!r:.40}")
    # Re-encoding the data costs little and lets it be validated exactly as in
    # binary mode: as JSON, strictly (no "3" for 3, no 0 for false).
    return _envelope(attributes, pydantic_core.to_json(document["data"]))


# -- helpers -------------------------------------------------------------------


def _header_text(name: str, raw: object) -> str:
    try:
        if type(raw) is bytes:
            return raw.decode("utf-8")
        if isinstance(raw, (bytes, bytearray, memoryview)):
            return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"header {name}: not UTF-8 text") from None
    raise DecodeError(f"header {name}: has no value")


def _require(attributes: dict[str, Any], what: str, *, prefix: str = "") -> None:
    missing = [prefix + name for name in REQUIRED_ATTRIBUTES if name not in attributes]
    if missing:
        raise DecodeError(f"missing CloudEvents {what}: {', '.join(missing)}")


def _envelope(attributes: dict[str, Any], data: bytes) -> Envelope:
    """The envelope of ``attributes`` (which it takes over) and the JSON payload ``data``."""
    type_ = attributes["type"]
    cls = EVENT_TYPES.get(type_)
    if cls is None:
        raise DecodeError(f"type: unknown event type {type_!r:.100}")
    # strict: the JSON must already have the types the schema gives, as a
    # subscriber validating against the JSON Schema would insist.
    try:
        payload = validate_payload(cls, data)
    except ValidationError as exc:
        raise DecodeError(_reason(exc, "data")) from None
    if "tracestate" in attributes and "traceparent" not in attributes:
        del attributes["tracestate"]
    key = _ACCEPTED_KEY(attributes)
    envelope = _accepted(key, attributes, payload)
    if envelope is not None:
        return envelope
    attributes["data"] = payload
    try:
        envelope = Envelope.model_validate(attributes)
    except ValidationError as exc:
        # W3C Trace Context: a receiver that cannot parse traceparent ignores it, and
        # then tracestate, and starts a new trace. Broken trace context is no reason to
        # refuse an event. The envelope's own validators check it (once); only when
        # they refuse it is it dropped and the envelope validated again.
        broken = {error["loc"][0] for error in exc.errors() if error["loc"]}
        if "traceparent" in broken:
            attributes.pop("traceparent")
            attributes.pop("tracestate", None)
        elif "tracestate" in broken:
            attributes.pop("tracestate")
        else:
            raise DecodeError(_reason(exc)) from None
        try:
            envelope = Envelope.model_validate(attributes)
        except ValidationError as exc:
            raise DecodeError(_reason(exc)) from None
    _remember(key, attributes["time"], envelope)
    return envelope


# -- decoding without validating the envelope twice -------------------------------
# Most attributes are the same for every event of one producer and class (source,
# type, dataschema, tenant, ...), and instants repeat within a batch. Once the
# envelope's validators have accepted such values, they are remembered; an event
# whose constant attributes were accepted before and whose varying ones pass the
# same checks the validators make is assembled without validating the envelope.
# Anything else takes the validating path above, which gives the reasons.

_ACCEPTED_KEY = itemgetter("specversion", "type", "source", "dataschema", "tenant", "schemaversion")
#: Accepted constant attributes (as _ACCEPTED_KEY reads them) -> their validated values.
_ACCEPTED: dict[tuple[Any, ...], tuple[Any, ...]] = {}
#: Accepted ``time`` texts -> the instant the envelope made of them.
_TIMES: dict[str, datetime] = {}
_KEPT = 4096
# The envelope's time field on its own: the same type, so the same verdicts.
_INSTANT: TypeAdapter[datetime] = TypeAdapter(Instant)


def _accepted(key: tuple[Any, ...], attributes: dict[str, Any], data: Event) -> Envelope | None:
    """The envelope the validators would make of ``attributes`` and ``data``, or None
    when that takes validating (first sight of its constant attributes, or a value
    the fast checks do not vouch for)."""
    constant = _ACCEPTED.get(key)
    if constant is None:
        return None
    ident, subject = attributes["id"], attributes["subject"]
    if not 0 < len(ident) <= 64 or subject != data.account_id:
        return None
    contenttype = attributes.get("datacontenttype", CONTENT_TYPE)
    traceparent, tracestate = attributes.get("traceparent"), attributes.get("tracestate")
    if contenttype != CONTENT_TYPE or not trace_context_accepted(traceparent, tracestate):
        return None
    text = attributes["time"]
    time = _TIMES.get(text)
    if time is None:
        try:
            time = _INSTANT.validate_python(text)
        except ValidationError:
            return None
        _keep(_TIMES, text, time)
    fields = set(attributes)
    fields.add("data")
    return assemble(
        {
            "specversion": constant[0],
            "id": ident,
            "type": constant[1],
            "source": constant[2],
            "time": time,
            "subject": subject,
            "datacontenttype": CONTENT_TYPE,
            "dataschema": constant[3],
            "tenant": constant[4],
            "schemaversion": constant[5],
            "traceparent": traceparent,
            "tracestate": tracestate,
            "data": data,
        },
        fields,
    )


def _remember(key: tuple[Any, ...], text: Any, envelope: Envelope) -> None:
    """Remember what the validators accepted in ``envelope``."""
    _keep(_ACCEPTED, key, accepted_constants(envelope))
    if type(text) is str:
        _keep(_TIMES, text, envelope.time)


def _keep(cache: dict[Any, Any], key: Any, value: Any) -> None:
    # Bounded: a producer with ever new values must not grow the process.
    if len(cache) >= _KEPT:
        cache.clear()
    cache[key] = value


def _check_key(key: object, envelope: Envelope) -> None:
    # A record keyed otherwise may sit in another partition than the account's
    # other events, so its order relative to them is lost: refuse it.
    if key is None:
        return
    expected = envelope.partition_key.encode()
    if type(key) is bytes and key == expected:
        return
    if not isinstance(key, (bytes, bytearray, memoryview)) or bytes(key) != expected:
        raise DecodeError(f"key: {key!r:.100} is not tenant:subject {envelope.partition_key!r}")


def _reason(exc: ValidationError, prefix: str = "") -> str:
    """The first errors of ``exc`` as "field.path: message; ...", e.g.
    "data.allocations[0].amount.currency: 'EURO' is not an ISO 4217 currency code"."""
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:5]:
        path = prefix
        for part in error["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path = f"{path}.{part}" if path else str(part)
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{path}: {message}" if path else message)
    more = len(errors) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
