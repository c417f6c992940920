"""Anything malformed decodes to ``DecodeError`` with a reason naming the field,
never to another exception: consumers dead-letter it and move on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dunning_events import Event, InvoiceIssued, NotificationFailed, PaymentReceived
from dunning_events.codec import DecodeError, from_json, from_kafka, to_json, to_kafka
from dunning_events.samples import sample_envelope

Headers = list[tuple[str, Any]]


def good() -> tuple[bytes, bytes, Headers]:
    message = to_kafka(sample_envelope(PaymentReceived))
    return message.key, message.value, list(message.headers)


def replaced(headers: Headers, name: str, value: Any) -> Headers:
    return [(n, value if n == name else v) for n, v in headers]


def without(headers: Headers, *names: str) -> Headers:
    return [(n, v) for n, v in headers if n not in names]


def kafka_reason(key: Any, value: Any, headers: Any) -> str:
    with pytest.raises(DecodeError) as info:
        from_kafka(key, value, headers)
    assert str(info.value) == info.value.reason
    return info.value.reason


def json_reason(raw: Any) -> str:
    with pytest.raises(DecodeError) as info:
        from_json(raw)
    return info.value.reason


def document() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(to_json(sample_envelope(PaymentReceived)))
    return result


# -- binary mode ---------------------------------------------------------------------


def test_missing_headers_are_named() -> None:
    key, value, headers = good()
    assert kafka_reason(key, value, without(headers, "ce_tenant")) == (
        "missing CloudEvents header(s): ce_tenant"
    )
    assert kafka_reason(key, value, without(headers, "ce_id", "ce_time")) == (
        "missing CloudEvents header(s): ce_id, ce_time"
    )
    assert kafka_reason(key, value, []) == (
        "missing CloudEvents header(s): ce_specversion, ce_id, ce_type, ce_source, ce_time, "
        "ce_subject, ce_dataschema, ce_tenant, ce_schemaversion"
    )


@pytest.mark.parametrize("wrong", ["dunning.Nope.v1", "dunning.PaymentReceived.v9", ""])
def test_unknown_type(wrong: str) -> None:
    key, value, headers = good()
    assert kafka_reason(key, value, replaced(headers, "ce_type", wrong.encode())) == (
        f"type: unknown event type {wrong!r}"
    )


def test_bad_json_in_the_value() -> None:
    key, _, headers = good()
    assert kafka_reason(key, b"{not json", headers).startswith("data: Invalid JSON: key must be")
    assert kafka_reason(key, b"", headers).startswith("data: Invalid JSON: EOF while parsing")
    assert kafka_reason(key, b"[]", headers) == "data: Input should be an object"
    assert kafka_reason(key, None, headers) == "data: the record has no value"


def test_a_payload_failing_validation_names_the_field() -> None:
    key, value, headers = good()
    data = json.loads(value)

    def reason_for(**changes: Any) -> str:
        return kafka_reason(key, json.dumps({**data, **changes}).encode(), headers)

    assert reason_for(amount={"amount": 500.0, "currency": "EUR"}) == (
        'data.amount.amount: amounts must be decimal strings like "1250.00", not floats'
    )
    assert reason_for(amount={"amount": "500.001", "currency": "EUR"}) == (
        "data.amount.amount: EUR allows at most 2 decimal places"
    )
    assert reason_for(unapplied={"amount": "0.00", "currency": "EUR"}) == (
        "data: allocations (400.00) plus unapplied (0.00) must equal the amount (500.00)"
    )
    assert reason_for(
        allocations=[{"invoice_id": "", "amount": {"amount": "1.00", "currency": "XXX"}}]
    ) == (
        "data.allocations[0].invoice_id: String should have at least 1 character; "
        "data.allocations[0].amount.currency: 'XXX' is not an ISO 4217 currency code"
    )
    assert reason_for(colour="red") == "data.colour: Extra inputs are not permitted"
    assert reason_for(received_at="2026-03-15T09:30:00") == (
        "data.received_at: Input should have timezone info"
    )
    missing = {k: v for k, v in data.items() if k != "payment_id"}
    assert kafka_reason(key, json.dumps(missing).encode(), headers) == (
        "data.payment_id: Field required"
    )


def test_payloads_are_read_strictly_as_their_schema_says() -> None:
    message = to_kafka(sample_envelope(NotificationFailed))
    data = json.loads(message.value)
    for field, wrong, expected in [
        ("attempts", "3", "data.attempts: Input should be a valid integer"),
        ("permanent", 0, "data.permanent: Input should be a valid boolean"),
        ("error", 42, "data.error: Input should be a valid string"),
    ]:
        value = json.dumps({**data, field: wrong}).encode()
        assert kafka_reason(message.key, value, message.headers) == expected


@pytest.mark.parametrize(
    ("header", "wrong", "expected"),
    [
        ("ce_time", b"2026-03-15T09:30:00", "time: Input should have timezone info"),
        ("ce_time", b"yesterday", "time: Input should be a valid datetime"),
        ("ce_specversion", b"0.3", "specversion: Input should be '1.0'"),
        ("ce_schemaversion", b"one", "schemaversion: Input should be a valid integer"),
        ("ce_schemaversion", b"2", "schemaversion must be 1 for this data"),
        ("ce_tenant", b"acme:eu", "tenant: String should match pattern"),
        ("ce_tenant", b"", "tenant: String should have at least 1 character"),
        ("ce_subject", b"SOMEONE-ELSE", "subject must be 'ACME-0042' for this data"),
        ("ce_dataschema", b"urn:other", "dataschema must be 'urn:dunning:events:PaymentReceived"),
        ("ce_source", b"has spaces", "source: must be a URI-reference"),
    ],
)
def test_malformed_attributes_are_named(header: str, wrong: bytes, expected: str) -> None:
    _, value, headers = good()
    # No key: it follows tenant and subject, and a mismatch there is not this test's point.
    reason = kafka_reason(None, value, replaced(headers, header, wrong))
    assert expected in reason, reason


def test_header_values_must_be_utf8_text_and_appear_once() -> None:
    key, value, headers = good()
    assert kafka_reason(key, value, replaced(headers, "ce_id", b"\xff\xfe")) == (
        "header ce_id: not UTF-8 text"
    )
    assert kafka_reason(key, value, replaced(headers, "ce_id", None)) == (
        "header ce_id: has no value"
    )
    assert kafka_reason(key, value, [*headers, ("ce_tenant", b"globex")]) == (
        "header ce_tenant: appears more than once"
    )
    assert kafka_reason(key, value, [*headers, ("CE_TENANT", b"acme")]) == (
        "header CE_TENANT: appears more than once"
    )


def test_malformed_header_lists() -> None:
    key, value, headers = good()
    assert kafka_reason(key, value, None) == "headers: not a list of (name, value) pairs"
    assert kafka_reason(key, value, [("ce_id",)]) == (
        "headers: ('ce_id',) is not a (name, value) pair"
    )
    assert kafka_reason(key, value, [(b"ce_id", b"1")]) == (
        "headers: (b'ce_id', b'1') is not a (name, value) pair"
    )
    assert kafka_reason(key, "not bytes", headers) == "value: not bytes"


def test_content_type_must_be_json() -> None:
    key, value, headers = good()
    assert kafka_reason(key, value, replaced(headers, "content-type", b"application/avro")) == (
        "content-type: expected application/json, got 'application/avro'"
    )
    structured = [("content-type", b"application/cloudevents+json")]
    assert kafka_reason(key, None, structured) == "value: a structured-mode record has no value"
    assert kafka_reason(key, b"{}", structured) == "data: missing"


def test_the_key_must_be_tenant_and_account() -> None:
    key, value, headers = good()
    assert key == b"acme:ACME-0042"
    assert kafka_reason(b"globex:ACME-0042", value, headers) == (
        "key: b'globex:ACME-0042' is not tenant:subject 'acme:ACME-0042'"
    )
    assert kafka_reason("acme:ACME-0042", value, headers).startswith("key: 'acme:ACME-0042' is")


# -- structured mode ------------------------------------------------------------------


def test_structured_mode_errors() -> None:
    assert json_reason(b"\xff").startswith("not JSON:")
    assert json_reason(b"{").startswith("not JSON: EOF while parsing")
    assert json_reason(b'{"a": NaN}').startswith("not JSON:")
    assert json_reason(b"[" * 100_000).startswith("not JSON: recursion limit exceeded")
    assert json_reason(None).startswith("not JSON:")
    assert json_reason(b"[]") == "an event must be a JSON object"
    assert json_reason(b'{"type": "dunning.InvoiceIssued.v1"}') == "data: missing"
    assert json_reason(json.dumps({**document(), "data_base64": "AAA="})) == (
        "data_base64: events carry JSON data, not binary"
    )
    stripped = {k: v for k, v in document().items() if k not in ("id", "subject")}
    assert json_reason(json.dumps(stripped)) == "missing CloudEvents attribute(s): id, subject"


@pytest.mark.parametrize(
    ("name", "wrong", "expected"),
    [
        ("tenant", 123, "tenant: must be a string, got 123"),
        ("tenant", None, "tenant: must be a string, got None"),
        ("tenant", ["acme"], "tenant: must be a string, got ['acme']"),
        ("time", 1773567000, "time: must be a string, got 1773567000"),
        ("schemaversion", "1", "schemaversion: must be an integer, got '1'"),
        ("schemaversion", True, "schemaversion: must be an integer, got True"),
        ("datacontenttype", "text/plain", "datacontenttype: Input should be 'application/json'"),
        ("type", "dunning.Unknown.v1", "type: unknown event type 'dunning.Unknown.v1'"),
    ],
)
def test_structured_attributes_must_have_their_json_types(
    name: str, wrong: Any, expected: str
) -> None:
    assert json_reason(json.dumps({**document(), name: wrong})) == expected


def test_structured_data_is_validated_like_binary_data() -> None:
    data = {**document()["data"], "amount": {"amount": 500.5, "currency": "EUR"}}
    assert json_reason(json.dumps({**document(), "data": data})) == (
        'data.amount.amount: amounts must be decimal strings like "1250.00", not floats'
    )
    assert json_reason(json.dumps({**document(), "data": None})) == (
        "data: Input should be an object"
    )
    # A JSON integer is refused too: the schema says string, and a subscriber that
    # validates against it would refuse the same event.
    data = {**document()["data"], "amount": {"amount": 500, "currency": "EUR"}}
    assert json_reason(json.dumps({**document(), "data": data})) == (
        'data.amount.amount: amounts must be decimal strings like "500.00", not numbers'
    )


# -- properties: nothing else ever escapes ---------------------------------------------

header_names = st.sampled_from(
    [
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "ce_subject",
        "ce_dataschema",
        "ce_tenant",
        "ce_schemaversion",
        "ce_traceparent",
        "ce_tracestate",
        "content-type",
        "x",
        "ce_",
    ]
)
header_values = st.one_of(st.binary(max_size=40), st.none(), st.text(max_size=10).map(str.encode))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(
    key=st.one_of(st.none(), st.binary(max_size=40)),
    value=st.one_of(st.none(), st.binary(max_size=200)),
    headers=st.lists(st.tuples(header_names, header_values), max_size=12),
)
def test_arbitrary_records_give_an_envelope_or_a_decode_error(
    key: Any, value: Any, headers: Headers
) -> None:
    try:
        from_kafka(key, value, headers)
    except DecodeError as exc:
        assert exc.reason


@given(st.data())
def test_mutated_valid_records_give_an_envelope_or_a_decode_error(data: st.DataObject) -> None:
    """Start from a valid record and break one thing, so the decoder gets past its first checks."""
    classes: list[type[Event]] = [PaymentReceived, InvoiceIssued]
    cls = data.draw(st.sampled_from(classes))
    message = to_kafka(sample_envelope(cls))
    key, value = message.key, message.value
    headers: Headers = list(message.headers)
    mutation = data.draw(st.sampled_from(["drop", "replace", "truncate", "flip", "json-field"]))
    if mutation == "drop":
        headers.pop(data.draw(st.integers(0, len(headers) - 1)))
    elif mutation == "replace":
        index = data.draw(st.integers(0, len(headers) - 1))
        headers[index] = (headers[index][0], data.draw(header_values))
    elif mutation == "truncate":
        value = value[: data.draw(st.integers(0, len(value)))]
    elif mutation == "flip":
        index = data.draw(st.integers(0, len(value) - 1))
        value = value[:index] + bytes([data.draw(st.integers(0, 255))]) + value[index + 1 :]
    else:
        payload = json.loads(value)
        payload[data.draw(st.sampled_from(sorted(payload)))] = data.draw(json_values)
        value = json.dumps(payload).encode()
    try:
        from_kafka(key, value, headers)
    except DecodeError as exc:
        assert exc.reason


@given(name=st.sampled_from([*document(), "data"]), replacement=json_values)
def test_structured_documents_with_any_attribute_replaced(name: str, replacement: Any) -> None:
    try:
        from_json(json.dumps({**document(), name: replacement}))
    except DecodeError as exc:
        assert exc.reason


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_arbitrary_input_in_structured_mode(raw: bytes | str) -> None:
    try:
        from_json(raw)
    except DecodeError as exc:
        assert exc.reason
