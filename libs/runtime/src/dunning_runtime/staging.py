"""Outbox rows from remembered templates: what ``outbox_rows`` writes, cheaply.

A command stages many events of one class with one tenant, source, instant and trace
context; their records differ only in the event id, the subject (the account, also in
the key) and the payload. The first such event is encoded the plain way
(``to_kafka`` of its traced envelope, ``encode_headers``); its headers and their
JSON text are then kept as a template with two holes, id and subject, and the next
events of that kind are filled in without building a traced envelope, its headers or
their JSON again. The template is only made from, and only used for, exact ``str``
ids and subjects and the very ``datetime`` object it was made with, so every byte is
the plain way's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from dunning_events import Envelope
from dunning_events.codec import KafkaMessage, kafka_message

__all__ = ["forget", "staged_row"]

#: (payload class, specversion, type, source, dataschema, tenant, schemaversion,
#: traceparent, tracestate) -> (the time object, headers with placeholders, key prefix,
#: header JSON before the id, between id and subject, after the subject).
_TEMPLATES: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_KEPT = 1024


def staged_row(
    envelope: Envelope,
    traceparent: str | None,
    tracestate: str | None,
    now: datetime,
    plain: Callable[[Envelope, str | None, str | None], tuple[KafkaMessage, str]],
) -> tuple[dict[str, Any], KafkaMessage]:
    """The outbox row of ``envelope`` (traced with ``traceparent``/``tracestate`` when
    it has no trace context of its own) and its message; ``plain`` is the plain way
    (message and header JSON), used for the first event of a kind and anything odd."""
    values = envelope.__dict__
    if values["traceparent"] is not None or traceparent is None:
        traceparent, tracestate = values["traceparent"], values["tracestate"]
    ident, subject, time, data = values["id"], values["subject"], values["time"], values["data"]
    template = None
    key: tuple[Any, ...] | None = None
    if (
        type(ident) is str
        and type(subject) is str
        and type(time) is datetime
        and type(values["schemaversion"]) is int
        # Exact types only: values of other types may be equal and still print otherwise
        # (1 and True), which only model_construct lets in.
        and type(values["specversion"]) is str
        and type(values["type"]) is str
        and type(values["source"]) is str
        and type(values["dataschema"]) is str
        and type(values["tenant"]) is str
    ):
        key = (
            type(data),
            values["specversion"],
            values["type"],
            values["source"],
            values["dataschema"],
            values["tenant"],
            values["schemaversion"],
            traceparent,
            tracestate,
        )
        try:
            template = _TEMPLATES.get(key)
        except TypeError:  # an unhashable value, which only model_construct lets in
            key = None
        # The very instant object the template was made with (a command's scope stamps
        # one on all its events): an equal instant may be written with another offset.
        if template is not None and template[0] is not time:
            template = None
    if template is None:
        message, header_json = plain(envelope, traceparent, tracestate)
        if key is not None:
            _remember(key, time, ident, subject, message, header_json)
    else:
        ident_raw, subject_raw = ident.encode(), subject.encode()
        headers = template[1].copy()
        headers[1] = ("ce_id", ident_raw)
        headers[5] = ("ce_subject", subject_raw)
        message = kafka_message(
            template[2] + subject_raw, data.__pydantic_serializer__.to_json(data), headers
        )
        header_json = (
            (template[3] + _json_text(ident, ident_raw) + template[4])
            + _json_text(subject, subject_raw)
            + template[5]
        )
    row = {
        "event_id": ident,
        "topic": data.topic,
        "key": message.key,
        "value": message.value,
        "headers": header_json,
        "created_at": now,
    }
    return row, message


def _json_text(text: str, raw: bytes) -> str:
    # What encode_headers writes for a varying header's value: the JSON string of its
    # bytes read as latin-1 (the same text for ASCII).
    return encode_basestring_ascii(text if text.isascii() else raw.decode("latin-1"))


def _remember(
    key: tuple[Any, ...],
    time: datetime,
    ident: str,
    subject: str,
    message: KafkaMessage,
    header_json: str,
) -> None:
    """Keep ``message``'s headers and their JSON as a template, if they have the layout
    ``to_kafka`` writes: the id second, the subject sixth, each written once."""
    headers = list(message.headers)
    ident_raw, subject_raw = ident.encode(), subject.encode()
    if (
        len(headers) < 6
        or headers[1] != ("ce_id", ident_raw)
        or headers[5] != ("ce_subject", subject_raw)
        or not message.key.endswith(b":" + subject_raw)
    ):
        return
    ident_json = f'["ce_id", {_json_text(ident, ident_raw)}]'
    subject_json = f'["ce_subject", {_json_text(subject, subject_raw)}]'
    # The id's and the subject's texts each appear once, where the layout puts them.
    before, found, rest = header_json.partition(ident_json)
    between, found_too, after = rest.partition(subject_json)
    if not found or not found_too or ident_json in after or subject_json in before + after:
        return
    if len(_TEMPLATES) >= _KEPT:
        _TEMPLATES.clear()
    _TEMPLATES[key] = (
        time,
        headers,
        message.key[: -len(subject_raw)],
        before + '["ce_id", ',
        "]" + between + '["ce_subject", ',
        "]" + after,
    )


def forget() -> None:
    """Forget every template (for tests: the next event is encoded the plain way)."""
    _TEMPLATES.clear()
