"""Anything malformed decodes to ``DecodeError`` with a reason, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dunning_events import InvoiceIssued, PaymentReceived
from dunning_events.codec import DecodeError, from_json, from_kafka, to_kafka
from dunning_events.samples import sample_envelope


def good() -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    message = to_kafka(sample_envelope(PaymentReceived))
    return message.key, message.value, list(message.headers)


def reason(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> str:
    with pytest.raises(DecodeError) as info:
        from_kafka(key, value, headers)
    return info.value.reason


def test_missing_header() -> None:
    key, value, headers = good()
    headers = [(k, v) for k, v in headers if k != "ce_tenant"]
    assert reason(key, value, headers) == "missing CloudEvents header(s): ce_tenant"


def test_unknown_type() -> None:
    key, value, headers = good()
    headers = [(k, b"dunning.Nope.v1" if k == "ce_type" else v) for k, v in headers]
    assert reason(key, value, headers) == "type: unknown event type 'dunning.Nope.v1'"


def test_bad_json_and_invalid_payload_name_the_field() -> None:
    key, _, headers = good()
    assert reason(key, b"{not json", headers).startswith("data:")
    assert "data.amount.amount" in reason(
        key,
        b'{"account_id":"ACME-0042","payment_id":"P","amount":{"amount":1.5,"currency":"EUR"},'
        b'"received_at":"2026-01-01T00:00:00Z","method":"x","unapplied":{"amount":"0","currency":"EUR"}}',
        headers,
    )


def test_naive_time_and_wrong_key() -> None:
    key, value, headers = good()
    naive = [(k, b"2026-03-15T09:30:00" if k == "ce_time" else v) for k, v in headers]
    assert reason(key, value, naive).startswith("time:")
    assert "does not match tenant:subject" in reason(b"other:key", value, headers)


def test_structured_mode_errors() -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        from_json(b"\xff")
    with pytest.raises(DecodeError, match="JSON object"):
        from_json(b"[]")
    with pytest.raises(DecodeError, match="data: missing"):
        from_json(b'{"type": "dunning.InvoiceIssued.v1"}')


@given(
    key=st.one_of(st.none(), st.binary(max_size=40)),
    value=st.one_of(st.none(), st.binary(max_size=200)),
    headers=st.lists(
        st.tuples(
            st.sampled_from(["ce_id", "ce_type", "ce_time", "ce_tenant", "ce_subject", "x", "ce_"]),
            st.binary(max_size=40),
        ),
        max_size=10,
    ),
)
def test_arbitrary_input_gives_an_envelope_or_a_decode_error(key, value, headers) -> None:
    try:
        from_kafka(key, value, headers)
    except DecodeError as exc:
        assert exc.reason


@given(st.binary(max_size=300))
def test_arbitrary_bytes_in_structured_mode(raw: bytes) -> None:
    try:
        from_json(raw)
    except DecodeError as exc:
        assert exc.reason


def test_sample_invoice_validates_its_own_parts() -> None:
    issued = sample_envelope(InvoiceIssued).data
    assert isinstance(issued, InvoiceIssued)
    with pytest.raises(ValueError, match="IANA time zone"):
        issued.model_validate({**issued.model_dump(), "timezone": "Mars/Olympus"})
