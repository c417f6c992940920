"""The outbox stages exactly the rows it staged before its encoding was made cheap:
the same key, value and headers (and header JSON) for every event, traced or not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from sqlalchemy import select

from dunning_events import (
    EVENT_CLASSES,
    Envelope,
    Event,
    PaymentReceived,
    codec,
    make_envelope,
)
from dunning_events.codec import KafkaMessage, to_kafka
from dunning_events.samples import TRACEPARENT, sample_envelope, sample_event
from dunning_runtime import staging
from dunning_runtime.messaging_tables import outbox as outbox_table
from dunning_runtime.outbox import Outbox, decode_headers, encode_headers, outbox_rows
from tests.bus.test_outbox import open_ledger

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def reference_header_json(headers: list[tuple[str, bytes]]) -> str:
    """``encode_headers`` as it was: one json.dumps of the whole list."""
    return json.dumps([[k, v.decode("latin-1")] for k, v in headers])


def reference_message(envelope: Envelope, trace_headers: dict[str, str]) -> KafkaMessage:
    """What the outbox staged for ``envelope`` before: a traced copy, then its record."""
    if envelope.traceparent is None and "traceparent" in trace_headers:
        envelope = envelope.model_copy(
            update={
                "traceparent": trace_headers["traceparent"],
                "tracestate": trace_headers.get("tracestate"),
            }
        )
    return KafkaMessage(
        key=envelope.partition_key.encode(),
        value=envelope.data.model_dump_json().encode(),
        headers=codec._headers(envelope),  # unchanged: the cache falls back on it
    )


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=[c.event_type for c in EVENT_CLASSES])
@pytest.mark.parametrize(
    "trace_headers",
    [{}, TRACE, {**TRACE, "tracestate": "v=1"}],
    ids=["untraced", "traceparent", "tracestate"],
)
def test_every_sample_is_staged_as_before(cls: type[Event], trace_headers: dict[str, str]) -> None:
    envelopes = [sample_envelope(cls), sample_envelope(cls, traceparent=TRACEPARENT)]
    # Twice: the second pass encodes from the caches the first one filled.
    for _ in range(2):
        rows, messages = outbox_rows(envelopes, trace_headers, NOW)
        for envelope, row, message in zip(envelopes, rows, messages, strict=True):
            expected = reference_message(envelope, trace_headers)
            assert message == expected
            assert row == {
                "event_id": envelope.id,
                "topic": cls.topic,
                "key": expected.key,
                "value": expected.value,
                "headers": reference_header_json(expected.headers),
                "created_at": NOW,
            }


header_lists = st.lists(
    st.tuples(
        st.sampled_from(["ce_id", "ce_type", "ce_subject", "traceparent", "x-other"])
        | st.text(max_size=12),
        st.binary(max_size=30),
    ),
    max_size=14,
)


@given(header_lists)
def test_header_json_is_what_json_dumps_wrote(headers: list[tuple[str, bytes]]) -> None:
    for _ in range(2):  # the second time from the kept text
        assert encode_headers(headers) == reference_header_json(headers)
    assert decode_headers(encode_headers(headers)) == headers


def test_header_json_of_other_byte_types_is_what_json_dumps_wrote() -> None:
    headers: list[Any] = [("ce_type", b"t"), ("x", bytearray(b"\xff")), ("ce_id", b"1")]
    assert encode_headers(headers) == reference_header_json(headers)


async def test_staged_rows_in_the_database_are_the_old_bytes(settings_factory) -> None:
    database, bus = await open_ledger(settings_factory("ledger"))
    envelopes = [sample_envelope(cls) for cls in EVENT_CLASSES]
    parent = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        async with database.transaction() as session:
            await Outbox().add(session, *envelopes)
        async with database.sessions() as session:
            stored = (
                await session.execute(
                    select(
                        outbox_table.c.event_id,
                        outbox_table.c.key,
                        outbox_table.c.value,
                        outbox_table.c.headers,
                    ).order_by(outbox_table.c.id)
                )
            ).all()
    finally:
        otel_context.detach(token)
        await bus.close()
        await database.dispose()
    assert len(stored) == len(envelopes)
    for envelope, row in zip(envelopes, stored, strict=True):
        expected = reference_message(envelope, TRACE)
        assert row.event_id == envelope.id
        assert (bytes(row.key), bytes(row.value)) == (expected.key, expected.value)
        assert row.headers == reference_header_json(expected.headers)
        assert to_kafka(envelope).value == expected.value


@given(
    cls=st.sampled_from(EVENT_CLASSES),
    ids=st.lists(st.text(min_size=1, max_size=64), min_size=1, max_size=3),
    accounts=st.lists(
        st.text(min_size=1, max_size=20) | st.sampled_from(['"q"', "Ä\\", "a" * 200]),
        min_size=1,
        max_size=3,
    ),
    trace_headers=st.sampled_from([{}, TRACE, {**TRACE, "tracestate": "v=1"}]),
    own_trace=st.booleans(),
    offset=st.sampled_from([0, 120, -210]),
)
def test_rows_from_templates_are_the_plain_rows(
    cls: type[Event],
    ids: list[str],
    accounts: list[str],
    trace_headers: dict[str, str],
    own_trace: bool,
    offset: int,
) -> None:
    """Events of one kind with other ids and subjects (any text), traced or not, at an
    instant written with one offset or another: every row and message is the plain way's."""
    staging.forget()
    when = NOW.astimezone(timezone(timedelta(minutes=offset)))
    envelopes = [
        make_envelope(
            sample_event(cls).model_copy(update={"account_id": account}),
            tenant="acme",
            source="/s",
            time=when if index % 2 else NOW,
            id=ident,
            traceparent=TRACEPARENT if own_trace else None,
        )
        for index, (ident, account) in enumerate(zip(ids * 2, accounts * 2, strict=False))
    ]
    for _ in range(2):  # the second pass fills the templates the first one kept
        rows, messages = outbox_rows(envelopes, trace_headers, NOW)
        for envelope, row, message in zip(envelopes, rows, messages, strict=True):
            expected = reference_message(envelope, trace_headers)
            assert message == expected
            assert row["headers"] == reference_header_json(expected.headers)
            assert (row["event_id"], row["key"], row["value"]) == (
                envelope.id,
                expected.key,
                expected.value,
            )


def test_constructed_envelopes_with_equal_values_of_other_types_are_the_plain_rows() -> None:
    """``True == 1`` and ``hash(True) == hash(1)``: an envelope built without validation
    with ``schemaversion=True`` must not take the template of one with ``1``."""
    staging.forget()
    plain = sample_envelope(PaymentReceived)
    odd = Envelope.model_construct(**{**plain.__dict__, "schemaversion": True})
    for envelope in (plain, plain, odd, odd):
        rows, messages = outbox_rows([envelope], TRACE, NOW)
        expected = reference_message(envelope, TRACE)
        assert messages == [expected]
        assert rows[0]["headers"] == reference_header_json(expected.headers)
