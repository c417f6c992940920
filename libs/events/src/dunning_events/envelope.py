"""The versioned event envelope, compatible with CloudEvents 1.0 (principle 8).

Context attributes: ``specversion``, ``id``, ``type``, ``source``, ``time``,
``subject`` (the account), ``datacontenttype``, ``dataschema``. Extension
attributes (CloudEvents requires lower-case alphanumeric names): ``tenant``,
``schemaversion``, and ``traceparent``/``tracestate`` of the CloudEvents
Distributed Tracing extension. ``data`` is the payload, an ``Event`` subclass;
decoders pick the concrete class from ``type`` (see ``registry``).
"""

from __future__ import annotations

import builtins
import os
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    model_validator,
)

from dunning_events.common import Instant

TYPE_PREFIX = "dunning."
SCHEMA_URN_PREFIX = "urn:dunning:events:"

# W3C Trace Context, level 1: version-traceid-parentid-flags, lower-case hex.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
# tracestate: up to 32 comma-separated key=value members, at most 512 characters
# in practice; we only check that it is printable ASCII without surprises.
_TRACESTATE = re.compile(r"[\x20-\x7e]{0,512}")
# RFC 3986 URI-reference characters (unreserved, reserved and percent escapes).
_URI_REFERENCE = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def is_valid_traceparent(value: str) -> bool:
    """Whether ``value`` is a W3C ``traceparent`` a tracer would accept."""
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return False
    version, trace_id, parent_id, _flags, rest = match.groups()
    # Version ff is forbidden; version 00 has nothing after the flags; all-zero
    # ids mean "no trace" and must not be propagated.
    return (
        version != "ff"
        and not (version == "00" and rest)
        and trace_id != "0" * 32
        and parent_id != "0" * 16
    )


def is_valid_tracestate(value: str) -> bool:
    """Whether ``value`` is a plausible W3C ``tracestate`` (printable ASCII, <= 512 chars)."""
    return _TRACESTATE.fullmatch(value) is not None


def _check_traceparent(value: str) -> str:
    if not is_valid_traceparent(value):
        raise ValueError("must be a W3C traceparent like 00-<32 hex>-<16 hex>-<2 hex>")
    return value


def _check_tracestate(value: str) -> str:
    if not is_valid_tracestate(value):
        raise ValueError("must be a W3C tracestate: printable ASCII, at most 512 characters")
    return value


def _check_uri_reference(value: str) -> str:
    if not _URI_REFERENCE.fullmatch(value):
        raise ValueError("must be a URI-reference such as /invoice-svc (no spaces)")
    return value


class Event(BaseModel):
    """Base of every event payload.

    Subclasses set ``event_type`` (e.g. "InvoiceIssued"), ``topic`` and, from the
    second version of an event on, ``version``. ``account_id`` is required on
    every event: it is the envelope's subject and, with the tenant, the Kafka
    key, so all events of one account stay in order.
    """

    # frozen: an event is a fact; extra="forbid": a misspelt or unknown field is an
    # error rather than data silently lost.
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    topic: ClassVar[str]

    account_id: str = Field(
        min_length=1,
        max_length=200,
        description="The customer account the event is about; the envelope's subject.",
    )

    @classmethod
    def cloudevent_type(cls) -> str:
        """The CloudEvents ``type``, e.g. ``dunning.InvoiceIssued.v1``."""
        return f"{TYPE_PREFIX}{cls.event_type}.v{cls.version}"

    @classmethod
    def dataschema(cls) -> str:
        """The URN of this event's JSON Schema, e.g. ``urn:dunning:events:InvoiceIssued:v1``."""
        return f"{SCHEMA_URN_PREFIX}{cls.event_type}:v{cls.version}"


E = TypeVar("E", bound=Event)


@cache
def _attributes_of(cls: type[Event]) -> tuple[str, str, int]:
    """``type``, ``dataschema`` and ``schemaversion`` for payloads of ``cls`` (fixed per
    class; an envelope checks them on every decode)."""
    return cls.cloudevent_type(), cls.dataschema(), cls.version


class Envelope(BaseModel):
    """One event as published: CloudEvents context attributes plus the payload.

    Build it with ``make_envelope``, which derives every attribute that depends on
    the payload; the validator below refuses envelopes whose attributes contradict
    their data.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )

    specversion: Literal["1.0"] = Field(default="1.0", description="CloudEvents version.")
    # 64 characters: the inbox of every consumer stores ids in a String(64) column.
    id: str = Field(
        default_factory=lambda: str(uuid.uuid4()),
        min_length=1,
        max_length=64,
        description="Unique per event (a UUID); consumers deduplicate on it.",
    )
    type: str = Field(
        pattern=r"^dunning\.[A-Za-z]+\.v[0-9]+$",
        description="Event name and major version, e.g. dunning.InvoiceIssued.v1.",
    )
    source: Annotated[str, AfterValidator(_check_uri_reference)] = Field(
        min_length=1,
        max_length=200,
        description="URI-reference of the producing service, e.g. /invoice-svc.",
    )
    time: Instant = Field(
        description="When it happened, by the producer's clock (RFC 3339 with an offset)."
    )
    subject: str = Field(
        min_length=1, max_length=200, description="The account id; equal to data.account_id."
    )
    datacontenttype: Literal["application/json"] = Field(
        default="application/json", description="The data is JSON."
    )
    dataschema: str = Field(
        description="URN of the data's JSON Schema, e.g. urn:dunning:events:InvoiceIssued:v1."
    )
    tenant: str = Field(
        min_length=1,
        max_length=100,
        # No ":" so that the partition key "tenant:account" splits unambiguously.
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Extension: the tenant that owns the account.",
    )
    schemaversion: int = Field(
        ge=1, description="Extension: the event's version, the number after .v in type."
    )
    traceparent: Annotated[str, AfterValidator(_check_traceparent)] | None = Field(
        default=None, description="Extension: W3C traceparent of the producer's span."
    )
    tracestate: Annotated[str, AfterValidator(_check_tracestate)] | None = Field(
        default=None, description="Extension: W3C tracestate that goes with traceparent."
    )
    # SerializeAsAny: dump the concrete payload's fields, not only Event's.
    data: SerializeAsAny[Event] = Field(description="The event payload.")

    @model_validator(mode="after")
    def _attributes_match_data(self) -> Self:
        data = self.data
        type_, dataschema, version = _attributes_of(builtins.type(data))
        # The common case in one comparison; the loop names the first attribute that differs.
        if (self.type, self.dataschema, self.schemaversion, self.subject) != (
            type_,
            dataschema,
            version,
            data.account_id,
        ):
            expected = {
                "type": type_,
                "dataschema": dataschema,
                "schemaversion": version,
                "subject": data.account_id,
            }
            for name, value in expected.items():
                if getattr(self, name) != value:
                    raise ValueError(f"{name} must be {value!r} for this data")
        if self.tracestate is not None and self.traceparent is None:
            raise ValueError("tracestate needs a traceparent")
        return self

    @property
    def partition_key(self) -> str:
        """``tenant:account_id``: one account's events share a partition and stay in order."""
        return f"{self.tenant}:{self.subject}"

    # builtins.type: inside this class, plain ``type`` is the attribute above.
    def data_as(self, cls: builtins.type[E]) -> E:
        """The payload as ``cls``, for typed access; ``TypeError`` if it is another event."""
        if not isinstance(self.data, cls):
            raise TypeError(f"{self.type} does not carry a {cls.__name__}")
        return self.data


def make_envelope(
    data: Event,
    *,
    tenant: str,
    source: str,
    time: datetime,
    id: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Envelope:
    """Wrap ``data`` in an envelope, deriving ``type``, ``subject``, ``dataschema`` and
    ``schemaversion`` from it; ``id`` defaults to a new UUID4.

    Raises ``pydantic.ValidationError`` for a naive ``time``, a malformed tenant,
    source or trace context.
    """
    # A command stamps many events with one tenant, source and instant (its scope):
    # once the envelope has accepted them for an event class, the next event of that
    # class only needs the checks of what varies (id, subject, trace context).
    cls = _kind(data)
    stamp = (
        _STAMPS.get((cls, tenant, source))
        if _kind(tenant) is str and _kind(source) is str
        else None
    )
    if stamp is not None and stamp[0] is time:
        if id is None:
            id = new_id()
        subject = data.account_id
        if (
            _kind(id) is str
            and 0 < len(id) <= 64
            and _kind(subject) is str
            and 0 < len(subject) <= 200
            and (
                (traceparent is None and tracestate is None)
                or trace_context_accepted(traceparent, tracestate)
            )
        ):
            return assemble(
                {
                    "specversion": "1.0",
                    "id": id,
                    "type": stamp[1],
                    "source": source,
                    "time": time,
                    "subject": subject,
                    "datacontenttype": "application/json",
                    "dataschema": stamp[2],
                    "tenant": tenant,
                    "schemaversion": stamp[3],
                    "traceparent": traceparent,
                    "tracestate": tracestate,
                    "data": data,
                },
                set(_MADE_FIELDS),
            )
    envelope = Envelope(
        id=id if id is not None else new_id(),
        type=data.cloudevent_type(),
        source=source,
        time=time,
        subject=data.account_id,
        dataschema=data.dataschema(),
        tenant=tenant,
        schemaversion=data.version,
        traceparent=traceparent,
        tracestate=tracestate,
        data=data,
    )
    # Only what the envelope keeps as given is remembered: then the same time object
    # next time is an instant it accepted, unchanged.
    if envelope.time is time and builtins.type(tenant) is str and builtins.type(source) is str:
        if len(_STAMPS) >= _STAMPS_KEPT:
            _STAMPS.clear()
        _STAMPS[(cls, tenant, source)] = (time, *_attributes_of(cls))
    return envelope


# -- fast paths ----------------------------------------------------------------
# Validating an Envelope costs more than its payload; these build one without a
# second validation where cheap checks (or a cached verdict) prove that the
# validators would accept it and keep every value as given.

#: The fields ``make_envelope`` passes (what pydantic records as set).
_MADE_FIELDS = frozenset(Envelope.model_fields) - {"specversion", "datacontenttype"}
#: (event class, tenant, source) -> (time, type, dataschema, schemaversion) the envelope
#: accepted last; bounded, as tenants and instants come and go.
_STAMPS: dict[tuple[builtins.type[Event], str, str], tuple[datetime, str, str, int]] = {}
_STAMPS_KEPT = 1024

_new_model = object.__new__
_kind = builtins.type
# BaseModel's slots, set through their descriptors: what object.__setattr__ ends in,
# without its lookup (pydantic's own __setattr__ refuses, the models being frozen).
_SLOTS = BaseModel.__dict__
set_dict = _SLOTS["__dict__"].__set__
set_fields_set = _SLOTS["__pydantic_fields_set__"].__set__
set_extra = _SLOTS["__pydantic_extra__"].__set__
set_private = _SLOTS["__pydantic_private__"].__set__


def assemble(values: dict[str, Any], fields_set: set[str]) -> Envelope:
    """The Envelope of ``values`` (every field, in declaration order), as validation
    would have built it, without validating: for callers that checked the values."""
    envelope: Envelope = _new_model(Envelope)
    set_dict(envelope, values)
    set_fields_set(envelope, fields_set)
    set_extra(envelope, None)
    set_private(envelope, None)
    return envelope


def trace_context_accepted(traceparent: object, tracestate: object) -> bool:
    """Whether the envelope's validators accept this trace context as given."""
    if traceparent is None:
        return tracestate is None
    return (
        builtins.type(traceparent) is str
        and is_valid_traceparent(traceparent)
        and (
            tracestate is None
            or (builtins.type(tracestate) is str and is_valid_tracestate(tracestate))
        )
    )


def _id_batch(count: int = 256) -> Iterator[str]:
    # uuid4 as uuid.uuid4() builds it (version nibble 4, variant bits 10), from one
    # os.urandom call per batch instead of one per id.
    digits = os.urandom(16 * count).hex()
    variant = _VARIANT
    return iter(
        [
            f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:]}"
            for h in (digits[i : i + 32] for i in range(0, 32 * count, 32))
        ]
    )


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_ids: Iterator[str] = iter(())


def new_id() -> str:
    """A new random UUID4 as text, like ``str(uuid.uuid4())`` (the default event id)."""
    global _ids
    try:
        return next(_ids)
    except StopIteration:
        _ids = _id_batch()
        return next(_ids)


def _forget_ids() -> None:
    # A forked child must not hand out the ids its parent will also use.
    global _ids
    _ids = iter(())


os.register_at_fork(after_in_child=_forget_ids)
