"""The codec's fast paths give exactly what the validating paths give.

Decoding assembles an envelope without validating it a second time once the
envelope's validators have accepted its constant attributes (source, type,
tenant, ...) and its instant; encoding keeps the header bytes an event shares with
the previous ones of its class, and ``make_envelope`` the verdict on a scope's
tenant, source and instant. Each test compares a cold run (caches emptied: the
validating path) with warm runs (the fast path): the same envelopes, the same
bytes, the same refusals with the same reasons.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dunning_events import (
    EVENT_CLASSES,
    Envelope,
    Event,
    Money,
    PaymentReceived,
    make_envelope,
    records,
)
from dunning_events import codec as codec_module
from dunning_events import envelope as envelope_module
from dunning_events.codec import DecodeError, KafkaMessage, from_json, from_kafka, to_json, to_kafka
from dunning_events.envelope import new_id
from dunning_events.money import MINOR_UNITS, check_places, quantize
from dunning_events.samples import TRACEPARENT, WHEN, sample_envelope, sample_event

ALL_EVENTS = pytest.mark.parametrize(
    "cls", EVENT_CLASSES, ids=[c.event_type for c in EVENT_CLASSES]
)
TRACES = pytest.mark.parametrize(
    "trace",
    [{}, {"traceparent": TRACEPARENT}, {"traceparent": TRACEPARENT, "tracestate": "v=abc,o=1"}],
    ids=["untraced", "traceparent", "tracestate"],
)
Headers = list[tuple[str, Any]]


def forget() -> None:
    """Empty every cache of verdicts, so the next call takes the validating path."""
    codec_module._ACCEPTED.clear()
    codec_module._TIMES.clear()
    codec_module._CONSTANT_HEADERS.clear()
    envelope_module._STAMPS.clear()
    records.forget()


def anatomy(envelope: Envelope) -> tuple[Any, ...]:
    """Everything about an envelope that validation decides, and its bytes."""
    return (
        list(envelope.__dict__.items()),
        envelope.__pydantic_fields_set__,
        envelope.__pydantic_extra__,
        envelope.__pydantic_private__,
        envelope.time.utcoffset(),
        envelope.time.tzinfo,
        to_json(envelope),
        to_kafka(envelope),
    )


def outcome(decode: Callable[[], Envelope]) -> tuple[Any, ...]:
    try:
        return ("decoded", *anatomy(decode()))
    except DecodeError as exc:
        return ("refused", exc.reason)


def cold_and_warm(decode: Callable[[], Envelope], warm_up: Callable[[], object]) -> None:
    """``decode`` gives the same outcome with no verdicts cached and after ``warm_up``
    (which caches the verdicts of a valid event), the first and the second time."""
    forget()
    cold = outcome(decode)
    forget()
    warm_up()
    assert outcome(decode) == cold
    assert outcome(decode) == cold


def reference_to_kafka(envelope: Envelope) -> KafkaMessage:
    """``to_kafka`` as it was before its header cache."""
    return KafkaMessage(
        key=envelope.partition_key.encode(),
        value=envelope.data.model_dump_json().encode(),
        headers=codec_module._headers(envelope),
    )


def record(envelope: Envelope) -> tuple[bytes, bytes, Headers]:
    message = reference_to_kafka(envelope)
    return message.key, message.value, list(message.headers)


# -- every sample --------------------------------------------------------------------


@ALL_EVENTS
@TRACES
def test_every_sample_decodes_the_same_cold_and_warm(
    cls: type[Event], trace: dict[str, str]
) -> None:
    envelope = sample_envelope(cls, **trace)
    key, value, headers = record(envelope)
    cold_and_warm(lambda: from_kafka(key, value, headers), lambda: from_kafka(key, value, headers))
    document = to_json(envelope)
    cold_and_warm(lambda: from_json(document), lambda: from_json(document))
    decoded = from_kafka(key, value, headers)  # warm
    assert decoded == envelope
    assert to_kafka(decoded) == reference_to_kafka(envelope)


@ALL_EVENTS
@TRACES
def test_every_sample_encodes_to_the_same_bytes(cls: type[Event], trace: dict[str, str]) -> None:
    forget()
    data = sample_event(cls)
    made = [make_envelope(data, tenant="acme", source="/s", time=WHEN, **trace) for _ in "ab"]
    # The second came from the cached verdict; both are what the constructor builds.
    for envelope in made:
        built = Envelope(
            id=envelope.id,
            type=data.cloudevent_type(),
            source="/s",
            time=WHEN,
            subject=data.account_id,
            dataschema=data.dataschema(),
            tenant="acme",
            schemaversion=data.version,
            traceparent=trace.get("traceparent"),
            tracestate=trace.get("tracestate"),
            data=data,
        )
        assert anatomy(envelope) == anatomy(built)
        assert to_kafka(envelope) == reference_to_kafka(envelope)
        assert to_kafka(envelope) == reference_to_kafka(envelope)  # from the header cache


@pytest.mark.parametrize(
    "time",
    [
        WHEN,
        WHEN.astimezone(timezone(timedelta(hours=2))),  # equal instant, other text
        WHEN.astimezone(timezone(timedelta(hours=-3, minutes=-30))),
        WHEN.replace(microsecond=120),
        datetime(2026, 10, 25, 2, 30, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_equal_instants_with_other_offsets_keep_their_own_time_header(time: datetime) -> None:
    data = sample_event(PaymentReceived)
    for when in (WHEN, time, WHEN, time):
        envelope = make_envelope(data, tenant="acme", source="/s", time=when)
        assert to_kafka(envelope) == reference_to_kafka(envelope)


# -- refusals -----------------------------------------------------------------------

MALFORMED = [
    ("ce_id", b""),
    ("ce_id", b"x" * 64),
    ("ce_id", b"x" * 65),
    ("ce_time", b"2026-03-15T09:30:00"),
    ("ce_time", b"yesterday"),
    ("ce_time", b"1999-12-31T23:59:59Z"),
    ("ce_time", b"2200-01-01T00:00:00+01:00"),
    ("ce_time", b"2026-03-15 09:30:00Z"),
    ("ce_time", b"2026-03-15T09:30:00.5+05:45"),
    ("ce_time", b"1773567000"),
    ("ce_specversion", b"0.3"),
    ("ce_specversion", b"1.0 "),
    ("ce_schemaversion", b"one"),
    ("ce_schemaversion", b"2"),
    ("ce_schemaversion", b"01"),
    ("ce_schemaversion", b" 1"),
    ("ce_tenant", b"acme:eu"),
    ("ce_tenant", b""),
    ("ce_tenant", b"acme\n"),
    ("ce_subject", b"SOMEONE-ELSE"),
    ("ce_subject", b""),
    ("ce_dataschema", b"urn:other"),
    ("ce_source", b"has spaces"),
    ("ce_source", b"/other-svc"),
    ("ce_type", b"dunning.InvoiceIssued.v1"),
    ("ce_traceparent", b"00-broken"),
    ("ce_traceparent", TRACEPARENT.encode().upper()),
    ("ce_tracestate", b"\x01"),
    ("ce_tracestate", b"ok=1"),
    ("ce_datacontenttype", b"text/plain"),
    ("ce_datacontenttype", b"application/json"),
]


@pytest.mark.parametrize(("header", "wrong"), MALFORMED)
@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
def test_malformed_attributes_get_the_same_verdict_cold_and_warm(
    header: str, wrong: bytes, traced: bool
) -> None:
    trace = {"traceparent": TRACEPARENT} if traced else {}
    key, value, headers = record(sample_envelope(PaymentReceived, **trace))
    mutated = [(n, v) for n, v in headers if n != header] + [(header, wrong)]

    cold_and_warm(lambda: from_kafka(None, value, mutated), lambda: from_kafka(key, value, headers))
    document = json.loads(to_json(sample_envelope(PaymentReceived, **trace)))
    attribute = header.removeprefix("ce_")
    document[attribute] = (
        int(wrong) if attribute == "schemaversion" and wrong.isdigit() else wrong.decode()
    )
    text = json.dumps(document)
    valid = to_json(sample_envelope(PaymentReceived, **trace))
    cold_and_warm(lambda: from_json(text), lambda: from_json(valid))


header_values = st.one_of(st.binary(max_size=70), st.text(max_size=70).map(str.encode))


@given(st.data())
def test_mutated_records_get_the_same_verdict_cold_and_warm(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(EVENT_CLASSES))
    traced = data.draw(st.booleans())
    envelope = sample_envelope(cls, traceparent=TRACEPARENT if traced else None)
    key, value, headers = record(envelope)
    mutated = list(headers)
    for _ in range(data.draw(st.integers(1, 2))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = (mutated[index][0], data.draw(header_values))
    cold_and_warm(lambda: from_kafka(key, value, mutated), lambda: from_kafka(key, value, headers))


# -- make_envelope ------------------------------------------------------------------


def made(call: Callable[[], Envelope]) -> tuple[Any, ...]:
    try:
        return ("made", *anatomy(call()))
    except ValidationError as exc:
        # ctx holds exception objects, which only equal themselves.
        return ("refused", [(e["type"], e["loc"], e["msg"], e["input"]) for e in exc.errors()])


texts = st.text(max_size=70) | st.sampled_from(["acme", "/s", "x" * 64, "x" * 65, ""])


@given(
    tenant=texts,
    source=texts,
    event_id=st.none() | texts,
    # model_copy does not validate: accounts the payload itself would refuse.
    account=st.sampled_from(["ACME-0042", "a" * 200, "a" * 201, ""]),
    traceparent=st.none() | st.sampled_from([TRACEPARENT, "00-broken", TRACEPARENT.upper()]),
    tracestate=st.none() | st.sampled_from(["ok=1", "\x01", "x" * 513]),
    time=st.sampled_from(
        [WHEN, datetime(2026, 1, 1), datetime(1999, 1, 1, tzinfo=UTC), WHEN + timedelta(days=1)]
    ),
)
def test_make_envelope_gives_the_same_envelope_or_error_cold_and_warm(
    tenant: str,
    source: str,
    event_id: str | None,
    account: str,
    traceparent: str | None,
    tracestate: str | None,
    time: datetime,
) -> None:
    data = sample_event(PaymentReceived).model_copy(update={"account_id": account})
    fixed_id = event_id if event_id is not None else str(uuid.uuid4())

    def call() -> Envelope:
        return make_envelope(
            data,
            tenant=tenant,
            source=source,
            time=time,
            id=fixed_id,
            traceparent=traceparent,
            tracestate=tracestate,
        )

    forget()
    cold = made(call)
    forget()
    # Warm up on a valid event with the same tenant, source and instant.
    with contextlib.suppress(ValidationError):
        make_envelope(sample_event(PaymentReceived), tenant=tenant, source=source, time=time)
    assert made(call) == cold
    assert made(call) == cold


@pytest.mark.parametrize(
    ("argument", "wrong"),
    [
        ("account", "a" * 201),
        ("account", ""),
        ("account", "a" * 200),
        ("id", ""),
        ("id", "x" * 65),
        ("id", "x" * 64),
        ("traceparent", "00-broken"),
        ("traceparent", TRACEPARENT.upper()),
        ("tracestate", "\x01"),
        ("tracestate", "x" * 513),
        ("tracestate", "ok=1"),
        ("traceparent", None),
    ],
)
def test_make_envelope_checks_what_varies_as_the_validators_do(
    argument: str, wrong: str | None
) -> None:
    arguments: dict[str, Any] = {
        "id": "e-1",
        "traceparent": TRACEPARENT,
        "tracestate": "ok=1",
        "account": "ACME-0042",
        argument: wrong,
    }
    data = sample_event(PaymentReceived).model_copy(update={"account_id": arguments.pop("account")})

    def call() -> Envelope:
        return make_envelope(data, tenant="acme", source="/s", time=WHEN, **arguments)

    forget()
    cold = made(call)
    forget()
    make_envelope(sample_event(PaymentReceived), tenant="acme", source="/s", time=WHEN)
    assert made(call) == cold
    assert made(call) == cold


def test_new_ids_are_uuid4_text() -> None:
    ids = [new_id() for _ in range(2_000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


# -- money ----------------------------------------------------------------------------

amount_texts = st.from_regex(r"-?[0-9]{1,17}(\.[0-9]{1,14})?", fullmatch=True)


@given(amount=amount_texts, currency=st.sampled_from(sorted(MINOR_UNITS)))
def test_amount_text_is_read_as_the_decimal_it_spells(amount: str, currency: str) -> None:
    """The wire's decimal strings take a shorter path than Decimals: same verdicts."""

    def verdict(raw: str | Decimal) -> tuple[Any, ...]:
        try:
            money = Money.model_validate({"currency": currency, "amount": raw})
        except ValidationError as exc:
            return ("refused", [(e["loc"], e["msg"]) for e in exc.errors()])
        return ("money", money.amount.as_tuple())

    result = verdict(amount)
    assert result == verdict(Decimal(amount))
    if result[0] == "money":
        exact = quantize(check_places(Decimal(amount), currency), currency)
        assert result[1] == (exact.copy_abs() if exact.is_zero() else exact).as_tuple()


# -- records in to_kafka's layout (records.py) ---------------------------------------


@ALL_EVENTS
@TRACES
def test_known_layouts_decode_from_remembered_verdicts_as_validation_does(
    cls: type[Event], trace: dict[str, str]
) -> None:
    envelope = sample_envelope(cls, **trace)
    key, value, headers = record(envelope)
    forget()
    assert records.decode_known(key, value, headers) is None  # nothing remembered yet
    validated = from_kafka(key, value, headers)
    codec_module._ACCEPTED.clear()  # so only records.py can skip the validation
    known = records.decode_known(key, value, headers)
    assert known is not None
    assert anatomy(known) == anatomy(validated)
    # Other ids, subjects and keys of the same kind: what the validating path gives.
    other = make_envelope(
        envelope.data.model_copy(update={"account_id": "ÄCME-1"}),
        tenant=envelope.tenant,
        source=envelope.source,
        time=envelope.time,
        **trace,
    )
    key, value, headers = record(other)
    for record_key in (key, None, b"acme:other", bytearray(key)):
        warm = outcome(lambda record_key=record_key: from_kafka(record_key, value, headers))
        forget()
        cold = outcome(lambda record_key=record_key: from_kafka(record_key, value, headers))
        assert cold == warm


@given(st.data())
def test_mutated_payloads_keys_and_pairs_get_the_same_verdict_cold_and_warm(
    data: st.DataObject,
) -> None:
    cls = data.draw(st.sampled_from(EVENT_CLASSES))
    trace = data.draw(st.sampled_from([{}, {"traceparent": TRACEPARENT}]))
    key, value, headers = record(sample_envelope(cls, **trace))
    mutated: list[Any] = list(headers)
    index = data.draw(st.integers(0, len(mutated) - 1))
    name, raw = mutated[index]
    mutated[index] = data.draw(
        st.sampled_from(
            [
                [name, raw],
                (name, bytearray(raw)),
                (name.upper(), raw),
                (name, raw, b""),
                (name, None),
            ]
        )
    )
    other_value = data.draw(
        st.sampled_from([value, value[:-1], value.replace(b'"', b"'", 1), b"{}", b"null"])
    )
    other_key = data.draw(st.sampled_from([key, None, key + b"x", key.upper()]))
    for checked in (headers, mutated):
        cold_and_warm(
            lambda checked=checked: from_kafka(other_key, other_value, checked),
            lambda: from_kafka(key, value, headers),
        )


@TRACES
@pytest.mark.parametrize("wrong", [b"\x80", b"", b"x" * 65, None])
def test_each_header_of_a_known_layout_made_wrong_gets_the_same_verdict(
    trace: dict[str, str], wrong: bytes | None
) -> None:
    key, value, headers = record(sample_envelope(PaymentReceived, **trace))
    for index, (name, _raw) in enumerate(headers):
        mutated = list(headers)
        mutated[index] = (name, wrong)
        cold_and_warm(
            lambda mutated=mutated: from_kafka(key, value, mutated),
            lambda: from_kafka(key, value, headers),
        )
