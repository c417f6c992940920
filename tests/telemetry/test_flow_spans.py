"""One business flow, one connected graph of spans, with the four services in this
process on the active backends and the SDK's in-memory exporter: the ERP's POST, the
events it causes, the overdue detection and the timer decisions the clock causes, and
the notice sent days later are joined by parents and links; spans carry the decision
and the send, and no contact data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from dunning_runtime.app import create_app
from dunning_runtime.telemetry import setup_tracing
from dunning_svc.main import SPEC as DUNNING
from invoice_svc.main import SPEC as INVOICE
from notify_svc.main import SPEC as NOTIFY
from payment_svc.main import SPEC as PAYMENT
from tests.support.fixtures import ADMIN, running, until, within
from tests.telemetry.spans import Node, components, from_sdk, personal_attributes

ACME = {"Authorization": "Bearer acme-key"}
CONTACT = {"name": "Dana Fischer", "email": "ap@acme.example", "phone": "+49 30 1234567"}
INVOICE_BODY: dict[str, Any] = {
    "invoice_id": "INV-T1",
    "account_id": "ACME-T",
    "account_name": "Fischer Consulting",
    "contact": CONTACT,
    "currency": "EUR",
    "amount_due": "1250.00",
    "issue_date": "2026-02-01",
    "due_date": "2026-03-03",
    "timezone": "Europe/Berlin",
    "locale": "en-GB",
}
START = datetime(2026, 3, 1, 9, tzinfo=UTC)

Clients = dict[str, httpx.AsyncClient]


@pytest.fixture
async def platform(settings_factory: Callable[..., Any]) -> AsyncIterator[Clients]:
    """The four services, each its own app and database, on one bus, manual clocks."""
    async with AsyncExitStack() as stack:
        clients: Clients = {}
        for spec in (INVOICE, PAYMENT, DUNNING, NOTIFY):
            settings = settings_factory(spec.name, clock="manual", grace_days=0)
            clients[spec.name] = await stack.enter_async_context(
                running(create_app(spec, settings))
            )
        await move(clients, START)
        yield clients


async def move(clients: Clients, when: datetime) -> None:
    """Every service's clock to ``when``, then each one's due work."""
    for client in clients.values():
        response = await client.put(
            "/v1/admin/clock", json={"now": when.isoformat()}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
    for client in clients.values():
        assert (await client.post("/v1/admin/tick", headers=ADMIN)).status_code == 200


def named(nodes: list[Node], name: str, **attributes: Any) -> list[Node]:
    return [
        n
        for n in nodes
        if n.name == name and all(n.attributes.get(k) == v for k, v in attributes.items())
    ]


async def test_the_notice_sent_after_the_due_date_is_connected_to_the_erps_post(
    platform: Clients,
) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("tests", "", exporter=exporter)
    response = await platform["invoice-svc"].post(
        "/v1/invoices", json=INVOICE_BODY, headers={**ACME, "Idempotency-Key": "k-t1"}
    )
    assert response.status_code == 201, response.text

    async def known() -> bool:
        found = await platform["dunning-svc"].get("/v1/accounts/ACME-T", headers=ACME)
        return found.status_code == 200 and len(found.json()["invoices"]) == 1

    await until(known, what="dunning-svc knows the invoice")

    async def sent_after_overdue() -> bool:
        nodes = from_sdk(exporter.get_finished_spans())
        return any(
            n.attributes.get("dunning.stage", "").startswith("overdue")
            for n in named(nodes, "notify send", **{"dunning.outcome": "sent"})
        )

    # Day by day until an overdue notice goes out. Once the invoice is overdue, each day
    # waits a while for the notice: a notice the contact cap holds goes out only on a
    # later day's tick, so stopping the clock early would wait for it for ever (it did,
    # under load, when the loop stopped at the first reminder).
    day = START
    while not await sent_after_overdue():
        assert day < START + timedelta(days=20), "no overdue notice within 20 days"
        day += timedelta(days=1)
        await move(platform, day)
        if named(from_sdk(exporter.get_finished_spans()), "invoice overdue"):
            await within(sent_after_overdue, timeout_s=5)
    nodes = [
        n
        for n in from_sdk(exporter.get_finished_spans())
        if n.attributes.get("dunning.tenant", "acme") == "acme"
    ]
    by_id = {n.span_id: n for n in nodes}

    [post] = [n for n in nodes if n.name == "POST /v1/invoices"]
    issued_publish = named(
        nodes, "invoices publish", **{"cloudevents.event_type": "dunning.InvoiceIssued.v1"}
    )
    assert issued_publish and all(p.parent_id == post.span_id for p in issued_publish)
    applied = {
        n.attributes["messaging.consumer.group.name"]: n
        for n in named(nodes, "invoices process")
        if n.parent_id in {p.span_id for p in issued_publish}
    }
    assert {"dunning-svc", "payment-svc"} <= set(applied)

    # The clock's work starts traces of its own, linked to what created its rows.
    [overdue] = named(nodes, "invoice overdue", **{"dunning.invoice_id": "INV-T1"})
    assert overdue.parent_id is None and overdue.trace_id != post.trace_id
    assert [by_id[link].trace_id for link in overdue.links] == [post.trace_id]
    [overdue_publish] = [
        n for n in named(nodes, "invoices publish") if n.parent_id == overdue.span_id
    ]
    decisions = named(nodes, "dunning decision", **{"dunning.account_id": "ACME-T"})
    assert decisions
    for decision in decisions:
        assert {
            "dunning.stage.from",
            "dunning.stage.to",
            "dunning.reason",
            "dunning.policy_version",
        } <= set(decision.attributes)
        if decision.parent_id is None:  # a timer's decision: linked to the last input
            assert decision.links and all(link in by_id for link in decision.links)
    overdue_decisions = [
        d for d in decisions if str(d.attributes["dunning.stage.to"]).startswith("overdue")
    ]
    assert overdue_decisions
    requested = [
        n
        for n in named(nodes, "dunning.commands publish")
        if n.attributes.get("cloudevents.event_type") == "dunning.NotificationRequested.v1"
    ]
    assert requested
    sends = named(nodes, "notify send", **{"dunning.outcome": "sent"})
    assert all(s.attributes["dunning.channel"] == "email" for s in sends)

    component = components(nodes)
    wanted = [
        post,
        applied["dunning-svc"],
        applied["payment-svc"],
        overdue,
        overdue_publish,
        *overdue_decisions,
        *requested,
        *sends,
    ]
    assert {component[n.span_id] for n in wanted} == {component[post.span_id]}
    kinds = {s.name: s.kind for s in exporter.get_finished_spans()}
    assert kinds["invoices publish"] is SpanKind.PRODUCER
    assert kinds["invoices process"] is SpanKind.CONSUMER

    assert personal_attributes(nodes) == []
    texts = [str(v) for n in nodes for v in n.attributes.values()]
    assert not [t for t in texts if "Dana" in t or "Fischer" in t]
