"""The published contract: the registry covers DESIGN.md, the committed JSON Schemas
and AsyncAPI document are fresh, and what we publish passes the schemas we publish."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from dunning_events import EVENT_CLASSES, EVENT_TYPES, Event, InvoiceIssued, event_class, topics
from dunning_events.codec import to_json, to_kafka
from dunning_events.generate import PACKAGE_ROOT, asyncapi_document, main, stale_files, write
from dunning_events.registry import UnknownEventTypeError, events_on
from dunning_events.samples import TRACEPARENT, sample_envelope

ALL_EVENTS = pytest.mark.parametrize(
    "cls", EVENT_CLASSES, ids=[c.event_type for c in EVENT_CLASSES]
)
REPO = Path(__file__).resolve().parents[3]
SCHEMAS = PACKAGE_ROOT / "schemas"

#: The events DESIGN.md names (each service's "Publishes ..." / "Emits ...").
#: Kept here too so the check runs where DESIGN.md is not next to the checkout.
DESIGN_EVENTS = {
    "InvoiceIssued",
    "InvoiceOverdue",
    "InvoiceVoided",
    "InvoiceDisputed",
    "InvoiceDisputeResolved",
    "InvoiceSettled",
    "PaymentReceived",
    "PaymentReversed",
    "NotificationRequested",
    "DunningStageChanged",
    "CollectionsHandoffRequested",
    "PromiseToPayRecorded",
    "PromiseToPayBroken",
    "PaymentPlanAgreed",
    "NotificationSent",
    "NotificationFailed",
}
#: Events the issues added beyond DESIGN.md's list: payment-svc (issue 7), dunning-svc
#: (issue 8) and notify-svc (issue 9).
ADDED_EVENTS = {
    "CreditApplied",
    "LateFeeAssessed",
    "CreditHoldRequested",
    "CreditHoldReleased",
    "PromiseToPayKept",
    "InstallmentMissed",
    "AccountWrittenOff",
    "NotificationSuppressed",
    "CollectorTaskCompleted",
    "ApiKeyRecorded",
}


def design_md() -> Path | None:
    for candidate in (
        REPO / "DESIGN.md",
        REPO / "docs" / "DESIGN.md",
        REPO.parent / "shared" / "DESIGN.md",
    ):
        if candidate.exists():
            return candidate
    return None


def committed_schema(cls: type[Event]) -> dict[str, Any]:
    path = SCHEMAS / f"{cls.event_type}.v{cls.version}.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


# -- the registry -----------------------------------------------------------------------


def test_every_event_named_in_design_md_is_registered() -> None:
    registered = {cls.event_type for cls in EVENT_TYPES.values()}
    assert registered == DESIGN_EVENTS | ADDED_EVENTS
    path = design_md()
    if path is not None:
        # Backticked CamelCase words of two or more parts are the event names.
        named = set(re.findall(r"`([A-Z][a-z]+(?:[A-Z][a-z]+)+)`", path.read_text()))
        assert named == DESIGN_EVENTS, "DESIGN.md and the registry disagree"


def test_registry_lookups() -> None:
    assert len(EVENT_TYPES) == len(EVENT_CLASSES) == len(DESIGN_EVENTS | ADDED_EVENTS)
    assert event_class("dunning.InvoiceIssued.v1") is InvoiceIssued
    assert all(EVENT_TYPES[cls.cloudevent_type()] is cls for cls in EVENT_CLASSES)
    with pytest.raises(UnknownEventTypeError) as info:
        event_class("dunning.InvoiceIssued.v2")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "unknown event type 'dunning.InvoiceIssued.v2'"
    payments = [cls.event_type for cls in events_on(topics.PAYMENTS)]
    assert payments == ["PaymentReceived", "PaymentReversed", "CreditApplied"]


def test_topics() -> None:
    assert topics.ALL_TOPICS == (
        "invoices",
        "payments",
        "dunning.commands",
        "dunning.events",
        "notifications",
        "api-keys",
    )
    assert topics.dead_letter_topic(topics.INVOICES) == "invoices.dlq"
    assert topics.dead_letter_topic(topics.DUNNING_COMMANDS) == "dunning.commands.dlq"


# -- generated files ------------------------------------------------------------------------


def test_committed_schemas_and_asyncapi_match_the_models() -> None:
    stale = [str(p.relative_to(PACKAGE_ROOT)) for p in stale_files()]
    assert not stale, f"run `make schemas`: stale {stale}"


def test_check_reports_stale_files_and_generation_fixes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "stale:" in capsys.readouterr().err
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    # Generation is deterministic: the same bytes as the committed files.
    for path in [tmp_path / "asyncapi.yaml", *sorted((tmp_path / "schemas").glob("*.json"))]:
        committed = PACKAGE_ROOT / path.relative_to(tmp_path)
        assert path.read_text() == committed.read_text(), path.name
    # A schema of no event is stale and a run removes it; an edited one is rewritten.
    retired, edited = (
        tmp_path / "schemas" / "Retired.v1.json",
        tmp_path / "schemas" / "InvoiceIssued.v1.json",
    )
    retired.write_text("{}")
    edited.write_text("{}")
    assert stale_files(tmp_path) == [edited, retired]
    assert main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Retired.v1.json" in err and "run `make schemas`" in err
    write(tmp_path)
    assert stale_files(tmp_path) == []
    assert not retired.exists()


# -- the JSON Schemas --------------------------------------------------------------------------


@ALL_EVENTS
def test_the_schema_describes_the_envelope_of_its_event(cls: type[Event]) -> None:
    schema = committed_schema(cls)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == cls.dataschema()
    assert schema["title"] == f"{cls.event_type} v1"
    assert schema["description"]
    properties = schema["properties"]
    assert properties["type"]["const"] == cls.cloudevent_type()
    assert properties["dataschema"]["const"] == cls.dataschema()
    assert properties["schemaversion"]["const"] == 1
    assert set(schema["required"]) == {
        "specversion",
        "id",
        "type",
        "source",
        "time",
        "subject",
        "datacontenttype",
        "dataschema",
        "tenant",
        "schemaversion",
        "data",
    }


@ALL_EVENTS
def test_every_field_is_described(cls: type[Event]) -> None:
    """Subscribers read the schema: every property of every payload part says what it is."""
    schema = committed_schema(cls)
    undescribed = [
        f"{model}.{name}"
        for model, definition in schema["$defs"].items()
        for name, prop in definition.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []
    assert all(definition.get("description") for definition in schema["$defs"].values())


@ALL_EVENTS
def test_what_we_publish_passes_the_published_schema(cls: type[Event]) -> None:
    check = validator(committed_schema(cls))
    for envelope in (
        sample_envelope(cls),
        sample_envelope(cls, traceparent=TRACEPARENT, tracestate="v=1"),
    ):
        document = json.loads(to_json(envelope))
        assert list(check.iter_errors(document)) == []
        # Binary mode: the record value is the schema's data.
        assert json.loads(to_kafka(envelope).value) == document["data"]


@ALL_EVENTS
def test_the_schema_refuses_what_we_would_refuse(cls: type[Event]) -> None:
    check = validator(committed_schema(cls))
    document = json.loads(to_json(sample_envelope(cls)))
    broken = [
        {**document, "type": "dunning.Other.v1"},
        {**document, "time": "15.03.2026"},
        {**document, "time": "2026-03-15T09:30:00"},
        {**document, "schemaversion": "1"},
        {**document, "tenant": "acme:eu"},
        {**document, "colour": "red"},
        {**document, "data": {**document["data"], "colour": "red"}},
        {**document, "data": {k: v for k, v in document["data"].items() if k != "account_id"}},
        {k: v for k, v in document.items() if k != "id"},
    ]
    for candidate in broken:
        assert not check.is_valid(candidate), candidate


def test_the_schema_refuses_float_negative_and_zero_amounts_and_loose_dates() -> None:
    check = validator(committed_schema(InvoiceIssued))
    document = json.loads(to_json(sample_envelope(InvoiceIssued)))
    for amount in (1250.0, "1250,00", "-1250.00", "0.00", "1.5e3"):
        data = {**document["data"], "amount_due": {"currency": "EUR", "amount": amount}}
        assert not check.is_valid({**document, "data": data}), amount
    for day in ("03/03/2026", "2026-3-3", "2026-03-03T00:00:00Z"):
        assert not check.is_valid({**document, "data": {**document["data"], "due_date": day}}), day


# -- the AsyncAPI document ------------------------------------------------------------------------


def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((PACKAGE_ROOT / "asyncapi.yaml").read_text())
    return document


def test_asyncapi_channels_are_the_topics_with_their_messages() -> None:
    document = asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] and document["info"]["version"]
    channels = document["channels"]
    assert {c["address"] for c in channels.values()} == set(topics.ALL_TOPICS)
    for channel in channels.values():
        listed = {ref["$ref"].rsplit("/", 1)[1] for ref in channel["messages"].values()}
        assert listed == {f"{cls.event_type}.v1" for cls in events_on(channel["address"])}
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]


def test_asyncapi_operations_say_who_sends_and_receives_what() -> None:
    document = asyncapi()
    operations = document["operations"]
    pairs = {
        (op["action"], name.split(".")[0], op["channel"]["$ref"].rsplit("/", 1)[1])
        for name, op in operations.items()
    }
    assert pairs == {
        ("send", "invoice-svc", "invoices"),
        ("send", "payment-svc", "payments"),
        ("send", "dunning-svc", "dunning_commands"),
        ("send", "dunning-svc", "dunning_events"),
        ("send", "notify-svc", "notifications"),
        ("receive", "dunning-svc", "invoices"),
        ("receive", "dunning-svc", "payments"),
        ("receive", "dunning-svc", "notifications"),
        ("receive", "invoice-svc", "payments"),
        ("receive", "notify-svc", "dunning_commands"),
        # Managed API keys: every service sends (the one taking the admin call) and
        # receives (into its own key table).
        *(
            (action, service, "api-keys")
            for action in ("send", "receive")
            for service in ("invoice-svc", "payment-svc", "dunning-svc", "notify-svc")
        ),
    }
    for operation in operations.values():
        channel = document["channels"][operation["channel"]["$ref"].rsplit("/", 1)[1]]
        assert operation["messages"]
        for ref in operation["messages"]:
            assert ref["$ref"].rsplit("/", 1)[1] in channel["messages"]


def resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.lstrip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


@ALL_EVENTS
def test_asyncapi_messages_point_at_the_schemas_and_their_examples_pass_them(
    cls: type[Event],
) -> None:
    document = asyncapi()
    message = document["components"]["messages"][f"{cls.event_type}.v1"]
    assert message["name"] == cls.event_type
    assert message["bindings"]["kafka"]["key"]["type"] == "string"
    file, pointer = message["payload"]["$ref"].split("#")
    schema = json.loads((PACKAGE_ROOT / file).read_text())
    payload_schema = {**resolve(schema, pointer), "$defs": schema["$defs"]}
    headers_schema = resolve(document, message["headers"]["$ref"].lstrip("#"))
    [example] = message["examples"]
    assert list(validator(payload_schema).iter_errors(example["payload"])) == []
    assert list(validator(headers_schema).iter_errors(example["headers"])) == []
    assert example["headers"]["ce_type"] == cls.cloudevent_type()


def test_asyncapi_document_is_what_the_generator_makes() -> None:
    assert asyncapi() == json.loads(json.dumps(asyncapi_document()))
