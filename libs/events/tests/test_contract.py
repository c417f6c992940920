"""The event contract: round trips, the committed files, and every DESIGN.md event."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cloudevents.v1.kafka import KafkaMessage as CEKafkaMessage
from cloudevents.v1.kafka import from_binary

from dunning_events import EVENT_CLASSES, EVENT_TYPES, Event, InvoiceIssued, topics
from dunning_events.codec import from_json, from_kafka, to_json, to_kafka
from dunning_events.generate import stale_files
from dunning_events.samples import sample_envelope

DESIGN = Path(__file__).resolve().parents[3].parent / "shared" / "DESIGN.md"
ALL = pytest.mark.parametrize("cls", EVENT_CLASSES, ids=[c.event_type for c in EVENT_CLASSES])


@ALL
def test_round_trip_through_kafka_binary_mode(cls: type[Event]) -> None:
    envelope = sample_envelope(cls)
    message = to_kafka(envelope)
    assert from_kafka(message.key, message.value, message.headers) == envelope
    headers = dict(message.headers)
    assert headers["ce_type"] == f"dunning.{cls.event_type}.v1".encode()
    assert headers["ce_subject"] == envelope.subject.encode()
    assert message.key == f"acme:{envelope.subject}".encode()


@ALL
def test_round_trip_through_structured_json(cls: type[Event]) -> None:
    envelope = sample_envelope(cls)
    assert from_json(to_json(envelope)) == envelope


@ALL
def test_cloudevents_sdk_reads_what_we_write(cls: type[Event]) -> None:
    message = to_kafka(sample_envelope(cls))
    event = from_binary(
        CEKafkaMessage(headers=dict(message.headers), key=message.key, value=message.value)
    )
    assert event["type"] == cls.cloudevent_type()
    assert event["tenant"] == "acme"
    assert event["subject"] == "ACME-0042"


def test_money_is_a_string_never_a_float() -> None:
    value = to_kafka(sample_envelope(InvoiceIssued)).value
    assert b'"amount_due":{"currency":"EUR","amount":"1250.00"}' in value


def test_trace_context_travels_in_headers() -> None:
    envelope = sample_envelope(InvoiceIssued).model_copy(
        update={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    )
    headers = dict(to_kafka(envelope).headers)
    assert headers["traceparent"] == headers["ce_traceparent"] == envelope.traceparent.encode()  # type: ignore[union-attr]


def test_committed_schemas_and_asyncapi_match_the_models() -> None:
    stale = stale_files()
    assert not stale, f"run `make schemas`: stale {[p.name for p in stale]}"


def test_every_event_named_in_design_is_in_the_registry() -> None:
    if not DESIGN.exists():
        pytest.skip(f"{DESIGN} is not beside this checkout")
    text = DESIGN.read_text()
    named = set(
        re.findall(
            r"`((?:Invoice|Payment|Notification|Dunning|Collections|PromiseToPay)[A-Za-z]+)`", text
        )
    )
    registered = {cls.event_type for cls in EVENT_CLASSES}
    assert named - registered == set(), "events named in DESIGN.md but not modelled"
    assert len(EVENT_TYPES) == len(EVENT_CLASSES) == 16


def test_every_topic_has_events_and_events_use_known_topics() -> None:
    used = {cls.topic for cls in EVENT_CLASSES}
    assert used == set(topics.ALL_TOPICS)
    assert topics.dead_letter_topic(topics.INVOICES) == "invoices.dlq"
