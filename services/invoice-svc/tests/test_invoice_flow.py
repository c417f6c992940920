"""invoice-svc on the bus: what it publishes, what payments do, overdue exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from invoice_fixtures import ACME, invoice
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dunning_events import (
    Allocation,
    Envelope,
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceSettled,
    Money,
    PaymentReceived,
    PaymentReversed,
    make_envelope,
    topics,
)
from dunning_events.codec import from_kafka, to_kafka
from dunning_runtime.app import create_app
from dunning_runtime.bus import create_bus
from dunning_runtime.bus.port import OutgoingMessage
from dunning_runtime.telemetry import setup_tracing
from invoice_svc.main import SPEC
from tests.support.fixtures import ADMIN, running


async def published(settings, count: int, *, timeout: float = 30) -> list[Envelope]:
    """The first ``count`` events on the invoices topic (fails if fewer arrive)."""
    bus = create_bus(settings)
    await bus.start()
    reader = bus.consumer(f"reader-{count}", [topics.INVOICES])
    await reader.start()
    records = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while len(records) < count and loop.time() < deadline:
            records += await reader.poll(0.5, 1000)
        # Anything beyond ``count`` is a defect the callers check for.
        records += await reader.poll(1.0, 1000)
    finally:
        await reader.stop()
        await bus.close()
    return [from_kafka(r.key, r.value, r.headers) for r in records]


def of(kind: type, events: list[Envelope]) -> list[Any]:
    return [e.data for e in events if isinstance(e.data, kind)]


async def pay(settings, event: PaymentReceived | PaymentReversed, tenant: str = "acme") -> None:
    bus = create_bus(settings)
    await bus.start()
    message = to_kafka(
        make_envelope(event, tenant=tenant, source="/payment-svc", time=event_time(event))
    )
    await bus.publish(
        [OutgoingMessage(topics.PAYMENTS, message.key, message.value, message.headers)]
    )
    await bus.close()


def event_time(event: PaymentReceived | PaymentReversed) -> Any:
    return event.received_at if isinstance(event, PaymentReceived) else event.reversed_at


async def until(check: Callable[[], Any], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def received(payment_id: str, invoice_id: str, amount: str) -> PaymentReceived:
    return PaymentReceived(
        account_id="ACME-42",
        payment_id=payment_id,
        amount=Money(amount=amount, currency="EUR"),  # type: ignore[arg-type]
        received_at="2026-03-02T10:00:00Z",  # type: ignore[arg-type]
        method="bank_transfer",
        allocations=[
            Allocation(invoice_id=invoice_id, amount=Money(amount=amount, currency="EUR"))
        ],  # type: ignore[arg-type]
        unapplied=Money(amount="0.00", currency="EUR"),  # type: ignore[arg-type]
    )


async def test_posted_invoice_is_published_with_trace_context(
    client: httpx.AsyncClient, invoice_settings
) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("tests", "", exporter=exporter)
    assert isinstance(trace.get_tracer_provider(), TracerProvider)

    assert (await client.post("/v1/invoices", json=invoice(), headers=ACME)).status_code == 201
    [issued] = await published(invoice_settings, 1)
    assert isinstance(issued.data, InvoiceIssued)
    assert (issued.tenant, issued.subject, issued.source) == ("acme", "ACME-42", "/invoice-svc")
    assert issued.data.amount_due == Money(amount="1250.00", currency="EUR")  # type: ignore[arg-type]
    assert issued.data.terms.late_fee is not None and issued.data.terms.late_fee.percent == 1.5
    assert issued.traceparent is not None
    trace_id = issued.traceparent.split("-")[1]
    server_spans = [
        s for s in exporter.get_finished_spans() if s.name.startswith("POST /v1/invoices")
    ]
    assert any(format(s.context.trace_id, "032x") == trace_id for s in server_spans)


async def test_payments_move_the_balance_and_settle_once(
    client: httpx.AsyncClient, invoice_settings
) -> None:
    await client.post("/v1/invoices", json=invoice(), headers=ACME)
    await pay(invoice_settings, received("PAY-1", "INV-1001", "250.00"))

    async def partially_paid() -> bool:
        body = (await client.get("/v1/invoices/INV-1001", headers=ACME)).json()
        return bool(body["status"] == "partially_paid")

    await until(partially_paid)
    body = (await client.get("/v1/invoices/INV-1001", headers=ACME)).json()
    assert (body["amount_paid"], body["balance"]) == ("250.00", "1000.00")

    await pay(invoice_settings, received("PAY-2", "INV-1001", "1000.00"))
    await pay(
        invoice_settings, received("PAY-2", "INV-1001", "1000.00")
    )  # redelivered: a new event, same payment

    async def paid() -> bool:
        return bool(
            (await client.get("/v1/invoices/INV-1001", headers=ACME)).json()["status"] == "paid"
        )

    await until(paid)
    await asyncio.sleep(1)  # the duplicate has had its chance to double-count
    body = (await client.get("/v1/invoices/INV-1001", headers=ACME)).json()
    assert (body["amount_paid"], body["balance"]) == ("1250.00", "0.00")
    events = await published(invoice_settings, 2)
    assert len(of(InvoiceSettled, events)) == 1

    reversal = PaymentReversed(
        account_id="ACME-42",
        payment_id="PAY-2",
        amount=Money(amount="1000.00", currency="EUR"),  # type: ignore[arg-type]
        reason="chargeback",
        reversed_at="2026-03-04T10:00:00Z",  # type: ignore[arg-type]
    )
    await pay(invoice_settings, reversal)
    await until(partially_paid)
    body = (await client.get("/v1/invoices/INV-1001", headers=ACME)).json()
    assert (body["amount_paid"], body["balance"], body["settled_at"]) == ("250.00", "1000.00", None)


async def test_payment_before_its_invoice_is_applied_when_the_invoice_arrives(
    client: httpx.AsyncClient, invoice_settings
) -> None:
    await pay(invoice_settings, received("PAY-EARLY", "INV-1001", "1250.00"))
    app = client.app  # type: ignore[attr-defined]

    async def recorded() -> bool:
        from sqlalchemy import func, select

        from invoice_svc.storage import allocations

        async with app.state.runtime.database.sessions() as session:
            return bool(
                (await session.execute(select(func.count()).select_from(allocations))).scalar_one()
            )

    await until(recorded)
    created = (await client.post("/v1/invoices", json=invoice(), headers=ACME)).json()
    assert (created["status"], created["balance"]) == ("paid", "0.00")
    events = await published(invoice_settings, 2)
    assert len(of(InvoiceIssued, events)) == len(of(InvoiceSettled, events)) == 1


async def tick_at(client: httpx.AsyncClient, instant: str) -> None:
    assert (
        await client.put("/v1/admin/clock", json={"now": instant}, headers=ADMIN)
    ).status_code == 200
    assert (await client.post("/v1/admin/tick", headers=ADMIN)).status_code == 200


async def test_overdue_is_published_once_per_invoice_across_ticks_and_a_restart(
    client: httpx.AsyncClient, invoice_settings
) -> None:
    batch = [
        invoice(invoice_id="DUE-BERLIN", due_date="2026-03-03", timezone="Europe/Berlin"),
        invoice(invoice_id="DUE-AUCKLAND", due_date="2026-03-03", timezone="Pacific/Auckland"),
        invoice(invoice_id="DUE-LATER", due_date="2026-03-20"),
        invoice(invoice_id="DISPUTED", due_date="2026-03-03"),
        invoice(invoice_id="VOIDED", due_date="2026-03-03"),
    ]
    await client.post("/v1/invoices/batch", json={"invoices": batch}, headers=ACME)
    await client.post("/v1/invoices/DISPUTED/dispute", json={"reason": "quality"}, headers=ACME)
    await client.post("/v1/invoices/VOIDED/void", headers=ACME)

    # acme has 2 grace days: due 3 March, overdue from 6 March local time.
    # 5 March 11:30 UTC is already 6 March in Auckland, still 5 March in Berlin.
    await tick_at(client, "2026-03-05T11:30:00Z")
    await tick_at(client, "2026-03-05T23:30:00Z")  # 6 March 00:30 in Berlin
    await tick_at(client, "2026-03-06T12:00:00Z")  # again: nothing new
    events = await published(invoice_settings, 5 + 3 + 2)
    overdue = of(InvoiceOverdue, events)
    assert sorted(o.invoice_id for o in overdue) == ["DUE-AUCKLAND", "DUE-BERLIN"]
    auckland = next(o for o in overdue if o.invoice_id == "DUE-AUCKLAND")
    assert (str(auckland.overdue_since), auckland.balance.amount) == ("2026-03-06", 1250)

    # A restart keeps what was announced.
    app = create_app(SPEC, invoice_settings)
    async with running(app) as again:
        await tick_at(again, "2026-03-07T12:00:00Z")
        rejected = await again.post(
            "/v1/invoices/DISPUTED/dispute/resolve", json={"resolution": "rejected"}, headers=ACME
        )
        assert rejected.status_code == 200
        await tick_at(again, "2026-03-07T12:30:00Z")
        assert (await again.get("/v1/invoices/DUE-BERLIN", headers=ACME)).json()[
            "days_past_due"
        ] == 4
    events = await published(invoice_settings, 5 + 3 + 2 + 2)
    assert sorted(o.invoice_id for o in of(InvoiceOverdue, events)) == [
        "DISPUTED",
        "DUE-AUCKLAND",
        "DUE-BERLIN",
    ]
