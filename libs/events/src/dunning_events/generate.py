"""Generate the committed contract files from the models (``make schemas``).

* ``libs/events/schemas/<EventType>.v<N>.json``: JSON Schema 2020-12 of the
  envelope carrying that event, as a subscriber receives it in structured mode
  (its ``data`` property is the binary-mode record value);
* ``libs/events/asyncapi.yaml``: AsyncAPI 3.0.0 document of the topics, their
  messages with Kafka headers and key, and which service sends or receives what.

Usage: ``python -m dunning_events.generate [--check] [--root DIR]``. ``--check``
writes nothing and exits 1 listing the stale files; a test runs the same check.
Output is deterministic (sorted JSON keys, fixed YAML order, fixed sample ids).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, create_model

from dunning_events import topics
from dunning_events.codec import REQUIRED_ATTRIBUTES, to_kafka
from dunning_events.envelope import Envelope, Event
from dunning_events.registry import EVENT_CLASSES, events_on
from dunning_events.samples import TRACEPARENT, sample_envelope

#: libs/events in a source checkout, where the generated files are committed.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING_VERSION = "0.5.0"

#: Who sends each topic and who receives it (DESIGN.md, "Shape"). dunning.events is
#: for any subscriber; no platform service consumes it.
SENDERS: dict[str, tuple[str, ...]] = {
    topics.INVOICES: ("invoice-svc",),
    topics.PAYMENTS: ("payment-svc",),
    topics.DUNNING_COMMANDS: ("dunning-svc",),
    topics.DUNNING_EVENTS: ("dunning-svc",),
    topics.NOTIFICATIONS: ("notify-svc",),
    topics.API_KEYS: ("invoice-svc", "payment-svc", "dunning-svc", "notify-svc"),
}
RECEIVERS: dict[str, tuple[str, ...]] = {
    topics.INVOICES: ("dunning-svc",),
    topics.PAYMENTS: ("dunning-svc", "invoice-svc"),
    topics.DUNNING_COMMANDS: ("notify-svc",),
    topics.DUNNING_EVENTS: (),
    topics.NOTIFICATIONS: ("dunning-svc",),
    topics.API_KEYS: ("invoice-svc", "payment-svc", "dunning-svc", "notify-svc"),
}
TOPIC_DESCRIPTIONS = {
    topics.INVOICES: "Invoice lifecycle facts from invoice-svc.",
    topics.PAYMENTS: "Payments and their reversals from payment-svc.",
    topics.DUNNING_COMMANDS: "Commands from dunning-svc to notify-svc.",
    topics.DUNNING_EVENTS: "Collection facts from dunning-svc, for any subscriber.",
    topics.NOTIFICATIONS: "Delivery results from notify-svc.",
    topics.API_KEYS: (
        "Managed API keys (their keyed hash, never the key) from whichever service took "
        "the admin call, for every service's own key table."
    ),
}

_DESCRIPTION = (
    "Events of the dunning platform. On Kafka they use the CloudEvents Kafka protocol "
    "binding in binary content mode: context attributes in ce_* headers, the event data "
    "as JSON in the record value, key tenant:account_id so that one account's events stay "
    "in order within a topic. Amounts are objects {currency, amount} with the amount as a "
    "decimal string. Delivery is at-least-once: deduplicate on ce_id. There is no order "
    "across topics. A breaking change is a new event version (dunning.X.v2) on the same "
    "topic. Payloads refuse unknown fields, so consumers upgrade dunning-events before "
    "producers add a field."
)


def _text(cls: type[Any]) -> str:
    """A class docstring as one line of prose."""
    return " ".join((cls.__doc__ or "").split())


def _summary(cls: type[Any]) -> str:
    """The first sentence of a class docstring."""
    text = _text(cls)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def schema_name(cls: type[Event]) -> str:
    """File stem of an event's schema, e.g. ``InvoiceIssued.v1``."""
    return f"{cls.event_type}.v{cls.version}"


def message_id(cls: type[Event]) -> str:
    """AsyncAPI message id of an event: the same stem as its schema file."""
    return schema_name(cls)


@cache
def envelope_model(cls: type[Event]) -> type[Envelope]:
    """The envelope with ``data`` narrowed to ``cls``, for its JSON Schema."""
    return create_model(
        f"{cls.event_type}Envelope",
        __base__=Envelope,
        data=(cls, Field(description=f"The {cls.event_type} payload.")),
    )


def _one_line_descriptions(node: Any) -> None:
    """Collapse the line breaks pydantic keeps from docstrings, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                node[key] = " ".join(value.split())
            else:
                _one_line_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            _one_line_descriptions(item)


def envelope_schema(cls: type[Event]) -> dict[str, Any]:
    """JSON Schema (2020-12) of the envelope carrying ``cls``, as serialised."""
    schema = envelope_model(cls).model_json_schema(mode="serialization")
    properties = schema["properties"]
    # Attributes that follow from the event type are constants in its schema.
    properties["type"]["const"] = cls.cloudevent_type()
    properties["dataschema"]["const"] = cls.dataschema()
    properties["schemaversion"]["const"] = cls.version
    # Optional attributes are left out rather than null (see codec.to_json).
    for name, pattern in (
        ("traceparent", "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"),
        ("tracestate", "^[\\x20-\\x7e]{0,512}$"),
    ):
        description = properties[name].get("description", "")
        properties[name] = {"type": "string", "pattern": pattern, "description": description}
        schema["required"].remove(name)
    _one_line_descriptions(schema)
    return {
        **schema,
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": cls.dataschema(),
        "title": f"{cls.event_type} v{cls.version}",
        "description": _text(cls),
    }


def headers_schema() -> dict[str, Any]:
    """JSON Schema of the Kafka headers of a binary-mode record (header values are text)."""
    required = [f"ce_{name}" for name in REQUIRED_ATTRIBUTES] + ["content-type"]
    text = {"type": "string"}
    return {
        "type": "object",
        "description": "CloudEvents Kafka binding headers (binary mode); values are UTF-8.",
        "required": required,
        "properties": {
            "ce_specversion": {"const": "1.0", "description": "CloudEvents version."},
            "ce_id": {**text, "description": "Unique per event; deduplicate on it."},
            "ce_type": {
                **text,
                "pattern": "^dunning\\.[A-Za-z]+\\.v[0-9]+$",
                "description": "Event name and version, e.g. dunning.InvoiceIssued.v1.",
            },
            "ce_source": {**text, "description": "Producing service, e.g. /invoice-svc."},
            "ce_time": {
                **text,
                "format": "date-time",
                "description": "When it happened (RFC 3339).",
            },
            "ce_subject": {**text, "description": "The account id."},
            "ce_dataschema": {**text, "description": "URN of the data's JSON Schema."},
            "ce_tenant": {**text, "description": "The tenant owning the account."},
            "ce_schemaversion": {
                **text,
                "pattern": "^[0-9]+$",
                "description": "The event's version, as in ce_type.",
            },
            "ce_traceparent": {**text, "description": "W3C traceparent of the producer."},
            "ce_tracestate": {**text, "description": "W3C tracestate of the producer."},
            "traceparent": {**text, "description": "Same as ce_traceparent, for W3C tooling."},
            "tracestate": {**text, "description": "Same as ce_tracestate, for W3C tooling."},
            "content-type": {"const": "application/json", "description": "The value is JSON."},
        },
    }


def _example(cls: type[Event]) -> dict[str, Any]:
    """The sample event of ``cls`` as a Kafka record: headers, key and payload."""
    envelope = sample_envelope(
        cls, id=str(uuid.uuid5(uuid.NAMESPACE_URL, cls.dataschema())), traceparent=TRACEPARENT
    )
    record = to_kafka(envelope)
    return {
        "name": f"{cls.event_type}Sample",
        "summary": f"A sample {cls.event_type}, as on the wire.",
        "headers": {name: value.decode() for name, value in record.headers},
        "payload": json.loads(record.value),
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every topic, message and operation."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in topics.ALL_TOPICS:
        channel_id = topic.replace(".", "_")
        events = events_on(topic)
        channels[channel_id] = {
            "address": topic,
            "title": topic,
            "description": TOPIC_DESCRIPTIONS[topic],
            "messages": {
                message_id(cls): {"$ref": f"#/components/messages/{message_id(cls)}"}
                for cls in events
            },
            "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}},
        }
        for action, services in (("send", SENDERS[topic]), ("receive", RECEIVERS[topic])):
            for service in services:
                operations[f"{service}.{action}.{channel_id}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel_id}"},
                    "summary": f"{service} {action}s on {topic}.",
                    # A new list each time: a shared one would come out as a YAML alias.
                    "messages": [
                        {"$ref": f"#/channels/{channel_id}/messages/{message_id(cls)}"}
                        for cls in events
                    ],
                }
        for cls in events:
            messages[message_id(cls)] = {
                "name": cls.event_type,
                "title": f"{cls.event_type} v{cls.version}",
                "summary": _summary(cls),
                "description": (
                    f"{_text(cls)} CloudEvents type {cls.cloudevent_type()}; "
                    f"data schema {cls.dataschema()}."
                ),
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/CloudEventsKafkaHeaders"},
                "payload": {"$ref": f"./schemas/{schema_name(cls)}.json#/properties/data"},
                "bindings": {
                    "kafka": {
                        "key": {
                            "type": "string",
                            "description": "tenant:account_id (UTF-8), the partition key.",
                        },
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
                "examples": [_example(cls)],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Dunning platform events",
            "version": "1.0.0",
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {"CloudEventsKafkaHeaders": headers_schema()},
            "messages": messages,
        },
    }


def rendered(root: Path = PACKAGE_ROOT) -> dict[Path, str]:
    """Every generated file under ``root`` and its content."""
    files = {
        root / "schemas" / f"{schema_name(cls)}.json": json.dumps(
            envelope_schema(cls), indent=2, sort_keys=True, ensure_ascii=False
        )
        + "\n"
        for cls in EVENT_CLASSES
    }
    files[root / "asyncapi.yaml"] = yaml.safe_dump(
        asyncapi_document(), sort_keys=False, width=100, allow_unicode=True
    )
    return files


def stale_files(root: Path = PACKAGE_ROOT) -> list[Path]:
    """Generated files that are missing, differ from the models, or belong to no event."""
    expected = rendered(root)
    stale = [p for p, text in expected.items() if not p.exists() or p.read_text() != text]
    stale += [p for p in (root / "schemas").glob("*.json") if p not in expected]
    return sorted(stale)


def write(root: Path = PACKAGE_ROOT) -> list[Path]:
    """Write every generated file under ``root``, removing schemas of no event."""
    expected = rendered(root)
    (root / "schemas").mkdir(parents=True, exist_ok=True)
    for path in (root / "schemas").glob("*.json"):
        if path not in expected:
            path.unlink()
    for path, text in expected.items():
        path.write_text(text)
    return sorted(expected)


def main(argv: list[str] | None = None) -> int:
    """Write the generated files, or with ``--check`` report the stale ones (exit 1)."""
    parser = argparse.ArgumentParser(
        prog="python -m dunning_events.generate",
        description="Generate the event JSON Schemas and AsyncAPI document.",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument(
        "--root", type=Path, default=PACKAGE_ROOT, help="directory of schemas/ and asyncapi.yaml"
    )
    args = parser.parse_args(argv)
    root: Path = args.root
    if args.check:
        stale = stale_files(root)
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            print("run `make schemas` to regenerate them", file=sys.stderr)
        return 1 if stale else 0
    written = write(root)
    print(f"wrote {len(written)} files under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
