"""Reading records in the exact layout ``to_kafka`` writes, from remembered verdicts.

Every record a producer of this package writes has the same header names in the same
order, and most header values repeat from record to record (specversion, type, source,
dataschema, tenant, schemaversion, content-type; the instant within a command). Once
the validating decoder (``codec``) has accepted a record, its constant header pairs are
remembered with the values the envelope made of them; a record whose constant pairs
equal remembered ones only needs the checks of what varies (id, subject, trace
context) and its payload's validation, which is how the validators would decide it.

Anything else (another layout, a value that is not bytes, an unknown constant, a
payload or a key the checks below do not accept) returns None, and the validating
decoder decides, with its reasons. So the fast path never refuses anything itself.
"""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter
from typing import Any

from pydantic import ValidationError

from dunning_events.envelope import Envelope, Event, assemble, trace_context_accepted
from dunning_events.mirror import validate_payload

__all__ = ["REQUIRED_ATTRIBUTES", "accepted_constants", "decode_known", "remember_record"]

#: Attributes every event has; a record without one of them is malformed. In the
#: envelope's field order, which is the order of to_kafka's headers.
REQUIRED_ATTRIBUTES = (
    "specversion",
    "id",
    "type",
    "source",
    "time",
    "subject",
    "dataschema",
    "tenant",
    "schemaversion",
)
_REQUIRED_NAMES = tuple(f"ce_{name}" for name in REQUIRED_ATTRIBUTES)
#: Header names by number of headers: untraced, with traceparent, with tracestate too.
_LAYOUTS = {
    10: (*_REQUIRED_NAMES, "content-type"),
    12: (*_REQUIRED_NAMES, "ce_traceparent", "content-type", "traceparent"),
    14: (
        *_REQUIRED_NAMES,
        "ce_traceparent",
        "ce_tracestate",
        "content-type",
        "traceparent",
        "tracestate",
    ),
}
# The constant pairs of each layout: specversion, type, source, dataschema, tenant,
# schemaversion and content-type.
_CONSTANT = {
    10: itemgetter(0, 2, 3, 6, 7, 8, 9),
    12: itemgetter(0, 2, 3, 6, 7, 8, 10),
    14: itemgetter(0, 2, 3, 6, 7, 8, 11),
}
_CONTENT_TYPE = ("content-type", b"application/json")
_FIELDS = {
    10: frozenset((*(name[3:] for name in _REQUIRED_NAMES), "data")),
    12: frozenset((*(name[3:] for name in _REQUIRED_NAMES), "traceparent", "data")),
    14: frozenset((*(name[3:] for name in _REQUIRED_NAMES), "traceparent", "tracestate", "data")),
}

#: Constant pairs -> (payload class, specversion, type, source, dataschema, tenant,
#: schemaversion, key prefix "tenant:"), as an accepted envelope had them.
_KNOWN: dict[tuple[Any, ...], tuple[Any, ...]] = {}
#: Accepted ("ce_time", text) pairs -> the instant the envelope made of them.
_INSTANTS: dict[tuple[str, bytes], datetime] = {}
_KEPT = 4096


def decode_known(key: object, value: object, headers: object) -> Envelope | None:
    """The envelope ``codec.from_kafka`` decodes from this record, when the record has
    ``to_kafka``'s layout and remembered constants; None when only it can tell."""
    if type(headers) is not list or type(value) is not bytes:
        return None
    count = len(headers)
    constant = _CONSTANT.get(count)
    if constant is None:
        return None
    try:
        known = _KNOWN.get(constant(headers))
        time = _INSTANTS.get(headers[4])
    except TypeError:  # an unhashable pair or value: the decoder's general path
        return None
    if known is None or time is None:
        return None
    ident = _text(headers[1], "ce_id")
    subject = _text(headers[5], "ce_subject")
    if ident is None or subject is None or not 0 < len(ident) <= 64:
        return None
    traceparent = tracestate = None
    if count > 10:
        traceparent = _text(headers[9], "ce_traceparent")
        if traceparent is None:  # not UTF-8 (refused), or another pair
            return None
        if count == 14:
            tracestate = _text(headers[10], "ce_tracestate")
            if tracestate is None or not _ignored(headers[13], "tracestate"):
                return None
        if not _ignored(headers[count - 1 - (count == 14)], "traceparent"):
            return None
        if not trace_context_accepted(traceparent, tracestate):
            return None
    try:
        data: Event = validate_payload(known[0], value)
    except ValidationError:
        return None  # the decoder validates it again, for the reason
    if data.account_id != subject:
        return None
    if key is not None and (type(key) is not bytes or key != known[7] + headers[5][1]):
        return None
    return _envelope(known, ident, time, subject, traceparent, tracestate, data, count)


def _envelope(
    known: tuple[Any, ...],
    ident: str,
    time: datetime,
    subject: str,
    traceparent: str | None,
    tracestate: str | None,
    data: Event,
    count: int,
) -> Envelope:
    return assemble(
        {
            "specversion": known[1],
            "id": ident,
            "type": known[2],
            "source": known[3],
            "time": time,
            "subject": subject,
            "datacontenttype": "application/json",
            "dataschema": known[4],
            "tenant": known[5],
            "schemaversion": known[6],
            "traceparent": traceparent,
            "tracestate": tracestate,
            "data": data,
        },
        set(_FIELDS[count]),
    )


def _text(pair: object, name: str) -> str | None:
    """The value of a ``(name, bytes)`` header pair as text, None for anything else."""
    if type(pair) is not tuple or len(pair) != 2 or pair[0] != name or type(pair[1]) is not bytes:
        return None
    try:
        text: str = pair[1].decode()
    except UnicodeDecodeError:
        return None
    return text


def _ignored(pair: object, name: str) -> bool:
    """Whether ``pair`` is a header the decoder reads past: ``name`` with bytes."""
    return type(pair) is tuple and len(pair) == 2 and pair[0] == name and type(pair[1]) is bytes


def remember_record(value: object, headers: object, envelope: Envelope) -> None:
    """Remember the constants of a record the validating decoder made ``envelope`` of,
    when it has ``to_kafka``'s layout (binary mode, every pair a ``(str, bytes)`` tuple)."""
    if type(headers) is not list or type(value) is not bytes:
        return
    names = _LAYOUTS.get(len(headers))
    if names is None or envelope.datacontenttype != "application/json":
        return
    for pair, name in zip(headers, names, strict=True):
        if type(pair) is not tuple or len(pair) != 2 or pair[0] != name:
            return
        if type(pair[0]) is not str or type(pair[1]) is not bytes:
            return
    constant = _CONSTANT[len(headers)](headers)
    if constant[-1] != _CONTENT_TYPE or (envelope.traceparent is None and len(headers) > 10):
        return
    _keep(
        _KNOWN,
        constant,
        (type(envelope.data), *accepted_constants(envelope), f"{envelope.tenant}:".encode()),
    )
    _keep(_INSTANTS, headers[4], envelope.time)


def accepted_constants(envelope: Envelope) -> tuple[Any, ...]:
    """The attributes an envelope's producer keeps for every event of a class (what the
    decoders remember once the validators accepted them): specversion, type, source,
    dataschema, tenant, schemaversion."""
    return (
        envelope.specversion,
        envelope.type,
        envelope.source,
        envelope.dataschema,
        envelope.tenant,
        envelope.schemaversion,
    )


def _keep(cache: dict[Any, Any], key: Any, value: Any) -> None:
    # Bounded: a producer with ever new values must not grow the process.
    if len(cache) >= _KEPT:
        cache.clear()
    cache[key] = value


def forget() -> None:
    """Forget every remembered verdict (for tests: the next decode validates)."""
    _KNOWN.clear()
    _INSTANTS.clear()
