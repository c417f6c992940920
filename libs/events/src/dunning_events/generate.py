"""Generate the committed contract files from the models: ``make schemas``.

* ``libs/events/schemas/<Type>.v<N>.json``: JSON Schema (2020-12) of the
  envelope carrying that event, as a subscriber receives it;
* ``libs/events/asyncapi.yaml``: AsyncAPI 3.0 document of topics, messages,
  Kafka bindings and which service sends or receives what.

``--check`` writes nothing and exits 1 naming the stale files; a test runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import create_model

from dunning_events import topics
from dunning_events.envelope import Envelope, Event
from dunning_events.registry import EVENT_CLASSES

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # libs/events
SCHEMA_DIR = PACKAGE_ROOT / "schemas"
ASYNCAPI = PACKAGE_ROOT / "asyncapi.yaml"

#: Who sends and who receives each topic (DESIGN.md, "Shape").
SENDERS = {
    topics.INVOICES: ["invoice-svc"],
    topics.PAYMENTS: ["payment-svc"],
    topics.DUNNING_COMMANDS: ["dunning-svc"],
    topics.DUNNING_EVENTS: ["dunning-svc"],
    topics.NOTIFICATIONS: ["notify-svc"],
}
RECEIVERS = {
    topics.INVOICES: ["dunning-svc"],
    topics.PAYMENTS: ["dunning-svc", "invoice-svc"],
    topics.DUNNING_COMMANDS: ["notify-svc"],
    topics.DUNNING_EVENTS: [],
    topics.NOTIFICATIONS: ["dunning-svc"],
}
TOPIC_DESCRIPTIONS = {
    topics.INVOICES: "Invoice lifecycle facts from invoice-svc.",
    topics.PAYMENTS: "Payments and reversals from payment-svc.",
    topics.DUNNING_COMMANDS: "Commands from dunning-svc to notify-svc.",
    topics.DUNNING_EVENTS: "Collection facts from dunning-svc, for any subscriber.",
    topics.NOTIFICATIONS: "Delivery results from notify-svc.",
}


def schema_name(cls: type[Event]) -> str:
    """File stem of an event's schema, e.g. ``InvoiceIssued.v1``."""
    return f"{cls.event_type}.v{cls.version}"


def envelope_schema(cls: type[Event]) -> dict[str, Any]:
    """JSON Schema of the envelope carrying ``cls``."""
    model = create_model(f"{cls.event_type}Envelope", __base__=Envelope, data=(cls, ...))
    schema = model.model_json_schema(mode="serialization")
    schema["properties"]["type"]["const"] = cls.cloudevent_type()
    schema["properties"]["dataschema"]["const"] = cls.dataschema()
    schema["properties"]["schemaversion"]["const"] = cls.version
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": cls.dataschema(),
        **schema,
        "title": f"{cls.event_type} v{cls.version}",
        "description": (cls.__doc__ or "").strip(),
    }


def _headers_schema() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "required": [
            "ce_specversion",
            "ce_id",
            "ce_type",
            "ce_source",
            "ce_time",
            "ce_subject",
            "ce_tenant",
            "ce_schemaversion",
            "content-type",
        ],
        "properties": {
            "ce_specversion": {"const": "1.0"},
            "ce_id": text,
            "ce_type": text,
            "ce_source": text,
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_subject": {**text, "description": "The account id"},
            "ce_tenant": text,
            "ce_schemaversion": text,
            "ce_dataschema": text,
            "ce_traceparent": text,
            "ce_tracestate": text,
            "traceparent": {**text, "description": "W3C trace context"},
            "tracestate": text,
            "content-type": {"const": "application/json"},
        },
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic and event."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in topics.ALL_TOPICS:
        channel_id = topic.replace(".", "_")
        events = [cls for cls in EVENT_CLASSES if cls.topic == topic]
        channels[channel_id] = {
            "address": topic,
            "description": TOPIC_DESCRIPTIONS[topic],
            "messages": {
                cls.event_type: {"$ref": f"#/components/messages/{cls.event_type}"}
                for cls in events
            },
            "bindings": {"kafka": {"partitions": 8, "bindingVersion": "0.5.0"}},
        }
        refs = [{"$ref": f"#/channels/{channel_id}/messages/{cls.event_type}"} for cls in events]
        for service in SENDERS[topic]:
            operations[f"{service}_sends_{channel_id}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": refs,
            }
        for service in RECEIVERS[topic]:
            operations[f"{service}_receives_{channel_id}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": refs,
            }
        for cls in events:
            messages[cls.event_type] = {
                "name": cls.event_type,
                "title": cls.event_type,
                "summary": (cls.__doc__ or "").strip().splitlines()[0],
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/CloudEventsKafkaHeaders"},
                "payload": {"$ref": f"./schemas/{schema_name(cls)}.json#/properties/data"},
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": "tenant:account_id"},
                        "bindingVersion": "0.5.0",
                    }
                },
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Dunning platform events",
            "version": "1.0.0",
            "description": (
                "Events of the dunning platform in the CloudEvents Kafka binding, binary mode: "
                "context attributes in ce_* headers, the event data as JSON in the value, "
                "key tenant:account_id. A breaking change is a new event version."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {"CloudEventsKafkaHeaders": _headers_schema()},
        },
    }


def rendered() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {
        SCHEMA_DIR / f"{schema_name(cls)}.json": json.dumps(
            envelope_schema(cls), indent=2, sort_keys=True
        )
        + "\n"
        for cls in EVENT_CLASSES
    }
    files[ASYNCAPI] = yaml.safe_dump(asyncapi_document(), sort_keys=False, width=100)
    return files


def stale_files() -> list[Path]:
    """Generated files that differ from (or are missing next to) the models."""
    stale = [p for p, text in rendered().items() if not p.exists() or p.read_text() != text]
    expected = set(rendered())
    stale += [p for p in SCHEMA_DIR.glob("*.json") if p not in expected]
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the generated files."""
    parser = argparse.ArgumentParser(prog="python -m dunning_events.generate")
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(PACKAGE_ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    SCHEMA_DIR.mkdir(exist_ok=True)
    for path in SCHEMA_DIR.glob("*.json"):
        path.unlink()
    for path, text in rendered().items():
        path.write_text(text)
    print(f"wrote {len(rendered())} files under {PACKAGE_ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
