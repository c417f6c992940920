"""Both codecs: every event round-trips, the wire form is the binding's, and the
CloudEvents SDK reads what we write and we read what it writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from dunning_events import (
    EVENT_CLASSES,
    Envelope,
    Event,
    InvoiceIssued,
    InvoiceOverdue,
    Money,
    NotificationSent,
    PaymentReceived,
    make_envelope,
)
from dunning_events.codec import DecodeError, from_json, from_kafka, to_json, to_kafka
from dunning_events.generate import PACKAGE_ROOT
from dunning_events.money import MINOR_UNITS, quantize
from dunning_events.samples import TRACEPARENT, WHEN, sample_envelope, sample_event

ALL_EVENTS = pytest.mark.parametrize(
    "cls", EVENT_CLASSES, ids=[c.event_type for c in EVENT_CLASSES]
)
SCHEMA_VALIDATORS = {
    cls: Draft202012Validator(
        json.loads((PACKAGE_ROOT / "schemas" / f"{cls.event_type}.v1.json").read_text())
    )
    for cls in EVENT_CLASSES
}


def through_kafka(envelope: Envelope) -> Envelope:
    message = to_kafka(envelope)
    return from_kafka(message.key, message.value, message.headers)


def through_json(envelope: Envelope) -> Envelope:
    return from_json(to_json(envelope))


# -- round trips -------------------------------------------------------------------


@ALL_EVENTS
@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
def test_every_event_round_trips_through_both_codecs(cls: type[Event], traced: bool) -> None:
    trace = {"traceparent": TRACEPARENT, "tracestate": "vendor=abc,other=1"} if traced else {}
    envelope = sample_envelope(cls, **trace)
    for decoded in (through_kafka(envelope), through_json(envelope)):
        assert decoded == envelope
        assert type(decoded.data) is cls
        # Equal and also identical on the wire: nothing is normalised on the way.
        assert to_json(decoded) == to_json(envelope)
        assert to_kafka(decoded) == to_kafka(envelope)


tenants = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.datetimes(
    # Within the years an Instant accepts (2000-2199), a day inside for any offset.
    min_value=datetime(2000, 1, 2),
    max_value=datetime(2199, 12, 30),
    timezones=offsets | st.just(UTC),
)
traceparents = st.from_regex(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", fullmatch=True).filter(
    lambda t: "0" * 32 not in t and "-" + "0" * 16 + "-" not in t
)
positive_money = st.tuples(
    st.sampled_from(sorted(MINOR_UNITS)),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10) ** 12, places=4),
).map(lambda pair: Money(amount=max(quantize(pair[1], pair[0]), Decimal(1)), currency=pair[0]))


@given(
    cls=st.sampled_from(EVENT_CLASSES),
    tenant=tenants,
    account=st.text(min_size=1, max_size=60),
    event_id=st.text(min_size=1, max_size=64),
    source=st.from_regex(r"/[a-z0-9/_.-]{0,40}", fullmatch=True),
    time=instants,
    traceparent=st.none() | traceparents,
)
def test_any_envelope_round_trips_and_passes_its_schema(
    cls: type[Event],
    tenant: str,
    account: str,
    event_id: str,
    source: str,
    time: datetime,
    traceparent: str | None,
) -> None:
    data = sample_event(cls, account_id=account)
    envelope = make_envelope(
        data, tenant=tenant, source=source, time=time, id=event_id, traceparent=traceparent
    )
    assert through_kafka(envelope) == envelope
    assert through_json(envelope) == envelope
    assert through_kafka(envelope).time.utcoffset() == time.utcoffset()
    # And whatever we write passes the schema we publish for it.
    errors = list(SCHEMA_VALIDATORS[cls].iter_errors(json.loads(to_json(envelope))))
    assert errors == [], [e.message for e in errors]


@given(amount=positive_money, share=st.fractions(min_value=0, max_value=1), when=instants)
def test_any_payment_round_trips_exactly(amount: Money, share: Fraction, when: datetime) -> None:
    allocated = min(
        quantize(amount.amount * share.numerator / share.denominator, amount.currency),
        amount.amount,
    )
    currency = amount.currency
    allocations = (
        [{"invoice_id": "INV-1", "amount": Money(amount=allocated, currency=currency)}]
        if allocated > 0
        else []
    )
    payment = sample_event(
        PaymentReceived,
        amount=amount,
        allocations=allocations,
        unapplied=Money(amount=amount.amount - allocated, currency=currency),
        held=[],
        received_at=when,
    )
    envelope = sample_envelope(PaymentReceived).model_copy(update={"data": payment})
    assert through_kafka(envelope).data == payment
    assert through_json(envelope).data == payment
    wire = json.loads(to_kafka(envelope).value)
    assert wire["amount"] == {"currency": currency, "amount": format(amount.amount, "f")}
    assert SCHEMA_VALIDATORS[PaymentReceived].is_valid(json.loads(to_json(envelope)))


def test_instants_with_second_offsets_are_kept_exact_in_utc() -> None:
    # Monrovia's offset until 1972, on a date within the years an Instant accepts.
    monrovia = timezone(-timedelta(minutes=44, seconds=30))
    moment = datetime(2026, 1, 1, 12, 0, tzinfo=monrovia)
    sent = sample_event(NotificationSent, sent_at=moment)
    envelope = make_envelope(sent, tenant="acme", source="/x", time=moment)
    assert envelope.time == moment and envelope.time.utcoffset() == timedelta(0)
    assert through_json(envelope).data == envelope.data
    assert through_kafka(envelope).time == moment


# -- the binary-mode wire form ---------------------------------------------------------


def test_binary_mode_headers_key_and_value() -> None:
    envelope = sample_envelope(
        InvoiceOverdue, id="evt-1", traceparent=TRACEPARENT, tracestate="v=1"
    )
    message = to_kafka(envelope)
    assert message.key == b"acme:ACME-0042"
    assert message.headers == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"evt-1"),
        ("ce_type", b"dunning.InvoiceOverdue.v1"),
        ("ce_source", b"/samples"),
        ("ce_time", b"2026-03-15T09:30:00Z"),
        ("ce_subject", b"ACME-0042"),
        ("ce_dataschema", b"urn:dunning:events:InvoiceOverdue:v1"),
        ("ce_tenant", b"acme"),
        ("ce_schemaversion", b"1"),
        ("ce_traceparent", TRACEPARENT.encode()),
        ("ce_tracestate", b"v=1"),
        ("content-type", b"application/json"),
        ("traceparent", TRACEPARENT.encode()),
        ("tracestate", b"v=1"),
    ]
    assert json.loads(message.value) == {
        "account_id": "ACME-0042",
        "invoice_id": "INV-1001",
        "balance": {"currency": "EUR", "amount": "1250.00"},
        "due_date": "2026-03-03",
        "overdue_since": "2026-03-04",
        "days_past_due": 12,
    }


def test_untraced_events_have_no_trace_headers_and_offsets_survive() -> None:
    berlin = datetime(2026, 3, 15, 10, 30, 0, 250000, tzinfo=timezone(timedelta(hours=1)))
    envelope = make_envelope(sample_event(InvoiceOverdue), tenant="acme", source="/x", time=berlin)
    headers = dict(to_kafka(envelope).headers)
    assert "traceparent" not in headers and "ce_traceparent" not in headers
    assert headers["ce_time"] == b"2026-03-15T10:30:00.250000+01:00"


def test_the_time_header_is_rfc_3339() -> None:
    headers = dict(to_kafka(sample_envelope(InvoiceOverdue)).headers)
    parsed = datetime.fromisoformat(headers["ce_time"].decode())
    assert parsed == WHEN and parsed.tzinfo is not None


def test_money_is_a_string_never_a_float_and_nulls_stay_in_the_data() -> None:
    value = to_kafka(sample_envelope(InvoiceIssued)).value
    assert b'"amount_due":{"currency":"EUR","amount":"1250.00"}' in value
    assert b'"unit_price":"125.00"' in value and b'"percent":"1.5"' in value
    assert b'"amount":null' in value  # the late fee's unused field: explicit, as in the schema


def test_structured_mode_document() -> None:
    envelope = sample_envelope(NotificationSent, id="evt-2")
    document = json.loads(to_json(envelope))
    assert document == {
        "specversion": "1.0",
        "id": "evt-2",
        "type": "dunning.NotificationSent.v1",
        "source": "/samples",
        "time": "2026-03-15T09:30:00Z",
        "subject": "ACME-0042",
        "datacontenttype": "application/json",
        "dataschema": "urn:dunning:events:NotificationSent:v1",
        "tenant": "acme",
        "schemaversion": 1,
        "data": json.loads(to_kafka(envelope).value),
    }
    # Optional attributes that are unset are absent, not null; nulls in data stay.
    no_provider_id = sample_envelope(NotificationSent, provider_message_id=None)
    assert json.loads(to_json(no_provider_id))["data"]["provider_message_id"] is None


# -- tolerance the bindings ask of receivers --------------------------------------------


def test_unknown_extensions_and_foreign_headers_are_ignored() -> None:
    envelope = sample_envelope(PaymentReceived)
    message = to_kafka(envelope)
    extra = [
        ("ce_partitionkey", b"acme:ACME-0042"),
        ("ce_vendorthing", b"\x00x"),
        ("x-binary", b"\xff\xfe"),
    ]
    assert from_kafka(message.key, message.value, [*message.headers, *extra]) == envelope
    document = json.loads(to_json(envelope))
    assert from_json(json.dumps({**document, "vendorthing": [1, 2]})) == envelope


def test_header_names_are_case_insensitive_and_content_type_may_have_parameters() -> None:
    envelope = sample_envelope(InvoiceOverdue)
    message = to_kafka(envelope)
    headers = [
        (name.upper(), value) if name.startswith("ce_") else (name, value)
        for name, value in message.headers
        if name != "content-type"
    ]
    headers.append(("Content-Type", b"application/json; charset=utf-8"))
    assert from_kafka(message.key, message.value, headers) == envelope


def test_records_without_key_or_content_type_still_decode() -> None:
    envelope = sample_envelope(InvoiceOverdue)
    message = to_kafka(envelope)
    headers = [(n, v) for n, v in message.headers if n != "content-type"]
    assert from_kafka(None, message.value, headers) == envelope


def test_broken_trace_context_is_dropped_not_fatal() -> None:
    """W3C: a receiver that cannot parse traceparent ignores it and tracestate."""
    envelope = sample_envelope(InvoiceOverdue)
    message = to_kafka(envelope)
    broken = [*message.headers, ("ce_traceparent", b"not-a-trace"), ("ce_tracestate", b"a=b")]
    decoded = from_kafka(message.key, message.value, broken)
    assert decoded.traceparent is None and decoded.tracestate is None
    assert decoded.data == envelope.data
    bad_state = [
        *message.headers,
        ("ce_traceparent", TRACEPARENT.encode()),
        ("ce_tracestate", "ü".encode()),
    ]
    decoded = from_kafka(message.key, message.value, bad_state)
    assert decoded.traceparent == TRACEPARENT and decoded.tracestate is None


def test_a_structured_mode_kafka_record_is_read_too() -> None:
    envelope = sample_envelope(PaymentReceived)
    headers = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    assert from_kafka(envelope.partition_key.encode(), to_json(envelope), headers) == envelope


# -- interoperability with the CloudEvents SDK ------------------------------------------


@ALL_EVENTS
def test_the_sdk_reads_what_we_write(cls: type[Event]) -> None:
    envelope = sample_envelope(cls, traceparent=TRACEPARENT)
    message = to_kafka(envelope)
    event = sdk_kafka.from_binary(
        sdk_kafka.KafkaMessage(headers=dict(message.headers), key=message.key, value=message.value),
        JSONFormat(),
    )
    attributes = event.get_attributes()
    assert attributes["type"] == cls.cloudevent_type()
    assert attributes["time"] == envelope.time
    assert (attributes["subject"], attributes["tenant"]) == ("ACME-0042", "acme")
    assert attributes["traceparent"] == TRACEPARENT
    assert attributes["partitionkey"] == envelope.partition_key
    assert event.get_data() == envelope.data.model_dump(mode="json")

    structured = JSONFormat().read(None, to_json(envelope))
    assert structured.get_attributes()["schemaversion"] == 1
    assert structured.get_data() == envelope.data.model_dump(mode="json")


@ALL_EVENTS
def test_we_read_what_the_sdk_writes(cls: type[Event]) -> None:
    envelope = sample_envelope(cls, traceparent=TRACEPARENT)
    attributes: dict[str, Any] = envelope.model_dump(
        mode="json", exclude={"data"}, exclude_none=True
    )
    attributes["time"] = envelope.time
    event = CloudEvent(attributes=attributes, data=envelope.data.model_dump(mode="json"))

    def key(_event: Any) -> bytes:
        return envelope.partition_key.encode()

    binary = sdk_kafka.to_binary(event, JSONFormat(), key_mapper=key)
    assert isinstance(binary.key, bytes)
    assert from_kafka(binary.key, binary.value, list(binary.headers.items())) == envelope
    structured = sdk_kafka.to_structured(event, JSONFormat(), key_mapper=key)
    assert isinstance(structured.key, bytes)
    headers = list(structured.headers.items())
    assert from_kafka(structured.key, structured.value, headers) == envelope


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sent_at", "9999-12-31T23:59:59Z"),
        ("sent_at", "0001-01-01T00:00:00Z"),
        ("sent_at", "1999-12-31T23:59:59Z"),
    ],
)
def test_an_instant_outside_the_years_2000_to_2199_is_refused_naming_the_field(
    field: str, value: str
) -> None:
    envelope = sample_envelope(NotificationSent)
    message = to_kafka(envelope)
    data = json.loads(message.value)
    data[field] = value
    with pytest.raises(DecodeError, match=rf"data\.{field}: .*between 2000-01-01 and 2199-12-31"):
        from_kafka(message.key, json.dumps(data).encode(), message.headers)


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1999-12-31"])
def test_a_date_outside_the_years_2000_to_2199_is_refused_naming_the_field(day: str) -> None:
    envelope = sample_envelope(InvoiceIssued)
    message = to_kafka(envelope)
    data = json.loads(message.value)
    data["issue_date"] = day
    with pytest.raises(DecodeError, match=r"data\.issue_date: .*between 2000-01-01 and 2199-12-31"):
        from_kafka(message.key, json.dumps(data).encode(), message.headers)


def test_invoice_metadata_is_bounded_as_the_api_bounds_it() -> None:
    envelope = sample_envelope(InvoiceIssued)
    message = to_kafka(envelope)
    data = json.loads(message.value)
    data["metadata"] = {"erp_document": "x" * 200_000}
    with pytest.raises(DecodeError, match=r"data\.metadata\.erp_document"):
        from_kafka(message.key, json.dumps(data).encode(), message.headers)
    data["metadata"] = {f"k{n}": "v" for n in range(51)}
    with pytest.raises(DecodeError, match=r"data\.metadata"):
        from_kafka(message.key, json.dumps(data).encode(), message.headers)
