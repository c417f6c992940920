"""Hostile events against every consumer of the four services, through the real bus.

hypothesis makes malformed records for each topic a service consumes (not JSON, a
wrong envelope, an unknown type, the right type with missing, mistyped or oversized
fields, amounts as numbers, unknown currencies, absurd dates, huge strings, another
tenant's key), seeded and bounded. They are published, followed by one valid event,
to the service running for real (its consumers, its database, the embedded log or
Kafka). Then: each hostile record is on ``<topic>.dlq`` with a reason naming what is
wrong, the consumer read every partition to its end (the valid event was applied),
and nothing but the valid event changed the service's tables.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import inspect, select, text

from dunning_events import (
    ApiKeyRecorded,
    DunningStageChanged,
    Event,
    InvoiceIssued,
    NotificationRequested,
    NotificationSent,
    PaymentReceived,
    make_envelope,
    topics,
)
from dunning_events.codec import to_kafka
from dunning_events.registry import EVENT_TYPES
from dunning_events.samples import sample_event
from dunning_events.topics import dead_letter_topic
from dunning_runtime.app import Runtime, ServiceSpec, create_app
from dunning_runtime.bus.port import OutgoingMessage, Record
from dunning_runtime.messaging_tables import inbox
from tests.bus.test_bus_port import drain
from tests.support.fixtures import ADMIN, running, until

START = datetime(2026, 3, 16, 9, tzinfo=UTC)
HOSTILE_ACCOUNT = "ACC-HOSTILE"
SENTINEL = "SENTINEL"
#: Records per consumed topic: enough kinds of damage, well under a minute per backend.
PER_TOPIC = 24
#: The service's own bookkeeping, which a dead letter may touch (the inbox notes it).
BOOKKEEPING = {"inbox", "outbox_relay_lease", "manual_clock", "idempotency_keys", "alembic_version"}

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T")


def _specs() -> dict[str, ServiceSpec]:
    from dunning_svc.main import SPEC as DUNNING
    from invoice_svc.main import SPEC as INVOICE
    from notify_svc.main import SPEC as NOTIFY
    from payment_svc.main import SPEC as PAYMENT

    return {
        "invoice-svc": INVOICE,
        "payment-svc": PAYMENT,
        "dunning-svc": DUNNING,
        "notify-svc": NOTIFY,
    }


# -- the hostile records ---------------------------------------------------------------


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) in a JSON document, containers included."""
    found = [(path, value)] if path else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _leaves(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _leaves(inner, (*path, index))
    return found


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        document = document[step]
    if value is _DELETE:
        del document[path[-1]]
    else:
        document[path[-1]] = value


_DELETE = object()


def _valid(cls: type[Event], data: Any) -> bool:
    try:
        cls.model_validate_json(json.dumps(data))
    except (ValidationError, ValueError):
        return False
    return True


def _message(event: Event, topic: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    envelope = make_envelope(event, tenant="acme", source="/hostile", time=START)
    kafka = to_kafka(envelope)
    return kafka.key, kafka.value, list(kafka.headers)


def _replace_header(
    headers: list[tuple[str, bytes]], name: str, value: bytes | None
) -> list[tuple[str, bytes]]:
    kept = [(n, v) for n, v in headers if n != name]
    return kept if value is None else [*kept, (name, value)]


@st.composite
def hostile_record(
    draw: st.DrawFn, topic: str
) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(kind, key, value, headers) of one malformed record for ``topic``."""
    types = sorted(
        (c for c in EVENT_TYPES.values() if c.topic == topic), key=lambda c: c.event_type
    )
    cls = draw(st.sampled_from(types))
    event = sample_event(cls, account_id=HOSTILE_ACCOUNT)
    key, value, headers = _message(event, topic)
    data = json.loads(value)
    leaves = _leaves(data)
    kind = draw(
        st.sampled_from(
            [
                "not_json",
                "not_an_object",
                "envelope",
                "unknown_type",
                "missing_field",
                "wrong_kind",
                "amount_as_number",
                "unknown_currency",
                "absurd_date",
                "huge_string",
                "another_tenant",
            ]
        )
    )
    moneys = [p for p, v in leaves if isinstance(v, dict) and {"amount", "currency"} <= set(v)]
    dates = [p for p, v in leaves if isinstance(v, str) and (_DATE.match(v) or _INSTANT.match(v))]
    strings = [p for p, v in leaves if isinstance(v, str)]
    if kind in ("amount_as_number", "unknown_currency") and not moneys:
        kind = "wrong_kind"
    if kind == "absurd_date" and not dates:
        kind = "huge_string"
    if kind == "not_json":
        value = (
            b"\xff" + draw(st.binary(max_size=64))
            if draw(st.booleans())
            # A trailing NUL: never a JSON document, whatever the text before it.
            else b"{" + draw(st.text(max_size=64)).encode() + b"\x00"
        )
    elif kind == "not_an_object":
        value = json.dumps(
            draw(
                st.one_of(
                    st.lists(st.integers(), max_size=3),
                    st.integers(),
                    st.text(max_size=20),
                    st.none(),
                )
            )
        ).encode()
    elif kind == "envelope":
        damage = draw(
            st.sampled_from(
                ["drop", "specversion", "time", "schemaversion", "content_type", "duplicate"]
            )
        )
        if damage == "drop":
            name = draw(
                st.sampled_from(
                    sorted(
                        n
                        for n, _ in headers
                        if n.startswith("ce_") and n not in ("ce_traceparent", "ce_tracestate")
                    )
                )
            )
            headers = _replace_header(headers, name, None)
        elif damage == "specversion":
            headers = _replace_header(headers, "ce_specversion", b"0.3")
        elif damage == "time":
            headers = _replace_header(
                headers,
                "ce_time",
                draw(st.sampled_from([b"yesterday", b"9999-12-31T00:00:00Z", b""])),
            )
        elif damage == "schemaversion":
            headers = _replace_header(headers, "ce_schemaversion", b"two")
        elif damage == "content_type":
            headers = _replace_header(headers, "content-type", b"text/plain")
        else:
            headers = [*headers, ("ce_id", uuid.uuid4().hex.encode())]
    elif kind == "unknown_type":
        name = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz.", min_size=1, max_size=40))
        headers = _replace_header(headers, "ce_type", f"dunning.{name}.Unknown.v1".encode())
    elif kind == "another_tenant":
        # The key names another tenant's account: it must not reach that tenant's data.
        key = f"globex:{HOSTILE_ACCOUNT}".encode()
    else:
        if kind == "missing_field":
            path, replacement = (draw(st.sampled_from(sorted(data))),), _DELETE
        elif kind == "wrong_kind":
            path = draw(st.sampled_from([p for p, _ in leaves]))
            replacement = draw(
                st.one_of(
                    st.integers(),
                    st.floats(allow_nan=False),
                    st.booleans(),
                    st.lists(st.none(), max_size=2),
                    st.just({"x": 1}),
                )
            )
        elif kind == "amount_as_number":
            path = (*draw(st.sampled_from(moneys)), "amount")
            replacement = draw(st.one_of(st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False)))
        elif kind == "unknown_currency":
            path = (*draw(st.sampled_from(moneys)), "currency")
            replacement = draw(st.sampled_from(["EURO", "eur", "", "E", "ZZZ", "€"]))
        elif kind == "absurd_date":
            path = draw(st.sampled_from(dates))
            replacement = draw(
                st.sampled_from(
                    [
                        "0001-01-01",
                        "9999-12-31",
                        "2026-02-30",
                        "1999-12-31T23:00:00Z",
                        "9999-12-31T23:59:59Z",
                        "2026-13-01T00:00:00Z",
                    ]
                )
            )
        else:
            path = draw(st.sampled_from(strings))
            replacement = "x" * draw(st.integers(100_001, 250_000))
        _set(data, path, replacement)
        value = json.dumps(data).encode()
        if kind in ("missing_field", "wrong_kind"):
            # A random change may happen to be valid (an optional field dropped).
            assume(not _valid(cls, data))
    headers = (
        _replace_header(headers, "ce_id", uuid.uuid4().hex.encode())
        if kind != "envelope"
        else headers
    )
    return kind, key, value, headers


def hostile_records(topic: str, count: int = PER_TOPIC) -> list[OutgoingMessage]:
    """``count`` hostile records for ``topic``, the same on every run (derandomized)."""
    made: list[OutgoingMessage] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_record(topic))
    def collect(record: tuple[str, bytes, bytes, list[tuple[str, bytes]]]) -> None:
        kind, key, value, headers = record
        case = f"{topic}#{len(made)}:{kind}".encode()
        made.append(OutgoingMessage(topic, key, value, [*headers, ("hostile_case", case)]))

    collect()
    return made


# -- the valid event after them ------------------------------------------------------


def sentinel(topic: str) -> Event:
    """A valid event on ``topic`` for an account no hostile record names."""
    account = f"ACC-{SENTINEL}"
    chosen: dict[str, Callable[[], Event]] = {
        topics.INVOICES: lambda: sample_event(
            InvoiceIssued, account_id=account, invoice_id=f"INV-{SENTINEL}"
        ),
        topics.PAYMENTS: lambda: sample_event(
            PaymentReceived, account_id=account, payment_id=f"PAY-{SENTINEL}"
        ),
        topics.DUNNING_EVENTS: lambda: sample_event(DunningStageChanged, account_id=account),
        topics.DUNNING_COMMANDS: lambda: sample_event(
            NotificationRequested,
            account_id=account,
            notification_id=f"NTF-{SENTINEL}",
            not_before=None,
        ),
        topics.NOTIFICATIONS: lambda: sample_event(
            NotificationSent, account_id=account, notification_id=f"NTF-{SENTINEL}"
        ),
        # A key's id is 16 hex digits; its display prefix carries the mark.
        topics.API_KEYS: lambda: sample_event(ApiKeyRecorded, prefix=f"dk_{SENTINEL}"),
    }
    return chosen[topic]()


# -- the service's state ---------------------------------------------------------------


async def snapshot(runtime: Runtime) -> dict[str, list[str]]:
    """Every row of the service's tables, as text, but its bookkeeping and the rows of
    the valid event's account."""
    async with runtime.database.transaction() as session:
        connection = await session.connection()
        names = await connection.run_sync(lambda c: inspect(c).get_table_names())
        state: dict[str, list[str]] = {}
        for name in sorted(set(names) - BOOKKEEPING):
            rows = (await session.execute(text(f'SELECT * FROM "{name}"'))).all()
            state[name] = sorted(
                line for line in (repr(tuple(r)) for r in rows) if SENTINEL not in line
            )
    return state


async def sentinel_rows(runtime: Runtime) -> int:
    """How many rows of the service's tables the valid events wrote."""
    async with runtime.database.transaction() as session:
        connection = await session.connection()
        names = await connection.run_sync(lambda c: inspect(c).get_table_names())
        n = 0
        for name in sorted(set(names) - BOOKKEEPING):
            rows = (await session.execute(text(f'SELECT * FROM "{name}"'))).all()
            n += sum(SENTINEL in repr(tuple(r)) for r in rows)
    return n


async def caught_up(runtime: Runtime) -> bool:
    """Every consumer committed every partition of its topics to the end."""
    for consumer in runtime.consumers:
        group, consumed = consumer.group, consumer.subscription.topics
        committed = await runtime.bus.committed_offsets(group, consumed)
        for topic in consumed:
            for partition, end in (await runtime.bus.end_offsets(topic)).items():
                if end and committed.get((topic, partition), 0) < end:
                    return False
    return True


# -- the test ----------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["invoice-svc", "payment-svc", "dunning-svc", "notify-svc"])
async def test_hostile_events_are_dead_lettered_and_change_nothing(
    service: str, settings_factory: Any
) -> None:
    service_settings = settings_factory(
        service,
        clock="manual",
        consumer_max_attempts=2,
        **({"smtp_url": ""} if service == "notify-svc" else {}),
    )
    app = create_app(_specs()[service], service_settings)
    async with running(app) as client:
        assert (
            await client.put("/v1/admin/clock", json={"now": START.isoformat()}, headers=ADMIN)
        ).is_success
        runtime: Runtime = app.state.runtime
        consumed = sorted({t for c in runtime.consumers for t in c.subscription.topics})
        await runtime.bus.ensure_topics([*consumed, *(dead_letter_topic(t) for t in consumed)])
        before = await snapshot(runtime)

        hostile = {topic: hostile_records(topic) for topic in consumed}
        valid = {topic: sentinel(topic) for topic in consumed}
        messages = []
        for topic in consumed:
            key, value, headers = _message(valid[topic], topic)
            messages += [*hostile[topic], OutgoingMessage(topic, key, value, headers)]
        await runtime.bus.publish(messages)

        async def valid_applied() -> bool:
            async with runtime.database.transaction() as session:
                rows = await session.execute(
                    select(inbox.c.topic).where(inbox.c.outcome == "applied")
                )
                applied_topics = {topic for (topic,) in rows}
            return applied_topics >= set(consumed) and await caught_up(runtime)

        await until(
            valid_applied, timeout_s=120, what=f"{service} consuming past the hostile events"
        )
        # What the valid event set off (a notice sent, events published) settles too.
        await client.post("/v1/admin/tick", headers=ADMIN)
        after = await snapshot(runtime)
        assert await sentinel_rows(runtime) >= 1, "the valid event left no trace"

        for topic in consumed:
            reader = runtime.bus.consumer(
                f"dlq-reader-{uuid.uuid4().hex[:6]}", [dead_letter_topic(topic)]
            )
            await reader.start()
            try:
                dead = await drain(reader, len(hostile[topic]))
            finally:
                await reader.stop()
            check_dead_letters(hostile[topic], dead)
        assert all(c.started.is_set() for c in runtime.consumers), "a consumer died"

    assert before, "the snapshot saw none of the service's tables"
    assert after == before, "a hostile event changed the service's state"


#: What the dead-letter reason must mention, by kind of damage (any one of the words).
REASON_WORDS = {
    "not_json": ("json", "utf-8", "value"),
    "not_an_object": ("object", "dict", "json", "data", "value"),
    "envelope": ("ce_", "content-type", "header", "specversion", "time", "schemaversion"),
    "unknown_type": ("type",),
    "another_tenant": ("key", "tenant"),
}


def check_dead_letters(sent: list[OutgoingMessage], dead: list[Record]) -> None:
    """Each hostile record is dead-lettered once, with a reason naming the damage."""
    by_case = {r.header("hostile_case"): r for r in dead}
    assert len(by_case) == len(sent), "a hostile record was dead-lettered twice, or one was lost"
    for message in sent:
        case = dict(message.headers)["hostile_case"].decode()
        record = by_case.get(case)
        assert record is not None, f"{case} was not dead-lettered"
        reason = (record.header("dlq_reason") or "").lower()
        kind = case.split(":")[-1]
        words = REASON_WORDS.get(kind)
        if words is None:  # a field was damaged: the reason names it
            words = ("data.", "data:")
        assert any(w in reason for w in words), (
            f"{case}: the reason {reason!r} names none of {words}"
        )
        assert "traceback" not in reason and len(reason) <= 1000, case


def test_hostile_records_are_the_same_on_every_run_and_all_invalid() -> None:
    from dunning_events.codec import DecodeError, from_kafka

    first = hostile_records(topics.INVOICES, 12)
    assert [m.value for m in first] == [m.value for m in hostile_records(topics.INVOICES, 12)]
    for message in first:
        with pytest.raises(DecodeError):
            from_kafka(message.key, message.value, message.headers)
