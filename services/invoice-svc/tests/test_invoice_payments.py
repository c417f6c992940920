"""The payments batch handler: a whole chunk folded in order, as one transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from invoice_fixtures import ACME, invoice
from test_invoice_flow import of, published

from dunning_events import (
    Allocation,
    CreditApplied,
    Envelope,
    InvoiceSettled,
    Money,
    PaymentReceived,
    PaymentReversed,
    make_envelope,
)
from dunning_runtime.errors import EventRejected
from invoice_svc import commands
from invoice_svc.storage import allocations

AT = "2026-03-02T10:00:00Z"


def money(amount: str, currency: str = "EUR") -> Money:
    return Money(amount=amount, currency=currency)  # type: ignore[arg-type]


def received(payment_id: str, *allocated: tuple[str, str], currency: str = "EUR") -> Envelope:
    total = sum(int(a.replace(".", "")) for _, a in allocated)
    places = 4 if currency == "CLF" else 2
    amount = f"{total // 10**places}.{total % 10**places:0{places}d}"
    event = PaymentReceived(
        account_id="ACME-42",
        payment_id=payment_id,
        amount=money(amount, currency),
        received_at=AT,  # type: ignore[arg-type]
        method="bank_transfer",
        allocations=[Allocation(invoice_id=i, amount=money(a, currency)) for i, a in allocated],
        unapplied=money("0", currency),
    )
    return make_envelope(event, tenant="acme", source="/payment-svc", time=event.received_at)


def reversed_(payment_id: str, *allocated: tuple[str, str]) -> Envelope:
    total = sum(int(a.replace(".", "")) for _, a in allocated) or 100
    event = PaymentReversed(
        account_id="ACME-42",
        payment_id=payment_id,
        amount=money(f"{total // 100}.{total % 100:02d}"),
        reason="chargeback",
        reversed_at="2026-03-02T11:00:00Z",  # type: ignore[arg-type]
        allocations=[Allocation(invoice_id=i, amount=money(a)) for i, a in allocated],
    )
    return make_envelope(event, tenant="acme", source="/payment-svc", time=event.reversed_at)


async def get(client: httpx.AsyncClient, invoice_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/v1/invoices/{invoice_id}", headers=ACME)).json()
    return body


async def test_a_chunk_is_folded_in_order(client: httpx.AsyncClient, invoice_settings) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    batch = [
        invoice(invoice_id="INV-1"),
        invoice(invoice_id="INV-2", amount_due="100.00", lines=[]),
        invoice(invoice_id="INV-3", amount_due="100.00", lines=[]),
    ]
    await client.post("/v1/invoices/batch", json={"invoices": batch}, headers=ACME)
    chunk = [
        received("P1", ("INV-1", "250.00"), ("INV-2", "100.00")),
        received("P1", ("INV-1", "250.00"), ("INV-2", "100.00")),  # redelivered as a new event
        reversed_("P2", ("INV-1", "1000.00")),  # overtakes its payment
        received("P2", ("INV-1", "1000.00")),  # so this is never applied
        received("P3", ("INV-1", "1000.00")),  # settles INV-1 ...
        reversed_("P3"),  # ... which reopens
        received("P4", ("INV-3", "100.00"), currency="USD"),  # wrong currency: kept unapplied
        received("P5", ("INV-9", "10.00")),  # before its invoice
    ]
    async with runtime.database.transaction() as session:
        await commands.apply_payments(session, runtime.outbox, chunk)

    one, two, three = [await get(client, i) for i in ("INV-1", "INV-2", "INV-3")]
    assert (one["status"], one["amount_paid"], one["settled_at"]) == (
        "partially_paid",
        "250.00",
        None,
    )
    assert (two["status"], two["balance"]) == ("paid", "0.00")
    assert (three["status"], three["amount_paid"]) == ("open", "0.00")
    async with runtime.database.sessions() as session:
        rows = (await session.execute(allocations.select())).mappings().all()
    assert {(r["payment_id"], r["invoice_id"], r["applied"], r["reversed"]) for r in rows} == {
        ("P1", "INV-1", True, False),
        ("P1", "INV-2", True, False),
        ("P2", "INV-1", False, True),
        ("P3", "INV-1", True, True),
        ("P4", "INV-3", False, False),
        ("P5", "INV-9", False, False),
    }
    settled = of(InvoiceSettled, await published(invoice_settings, 3 + 2))
    assert sorted(s.invoice_id for s in settled) == ["INV-1", "INV-2"]

    created = await client.post(
        "/v1/invoices",
        json=invoice(invoice_id="INV-9", amount_due="10.00", lines=[]),
        headers=ACME,
    )
    assert (created.json()["status"], created.json()["amount_paid"]) == ("paid", "10.00")


async def test_an_allocation_beyond_the_money_limit_rejects_its_event(
    client: httpx.AsyncClient,
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    huge = received("P-HUGE", ("INV-1001", "100000000000000.0000"), currency="CLF")
    with pytest.raises(EventRejected) as info:
        async with runtime.database.transaction() as session:
            await commands.apply_payments(session, runtime.outbox, [huge])
    assert info.value.event_id == huge.id
    assert "below 10^12" in info.value.reason


async def test_discount_and_credit_applied_settle_and_a_reversal_gives_both_back(
    client: httpx.AsyncClient, invoice_settings
) -> None:
    """payment-svc's discount (2/10) and its CreditApplied move the balance like an
    allocation; the reversal reopens both invoices by amount + discount."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    batch = [
        invoice(invoice_id="INV-D", amount_due="1000.00", lines=[]),
        invoice(invoice_id="INV-C", amount_due="100.00", lines=[]),
    ]
    await client.post("/v1/invoices/batch", json={"invoices": batch}, headers=ACME)
    payment = PaymentReceived(
        account_id="ACME-42",
        payment_id="P-D",
        amount=money("1080.00"),
        received_at=AT,  # type: ignore[arg-type]
        method="sepa",
        allocations=[
            Allocation(invoice_id="INV-D", amount=money("980.00"), discount=money("20.00"))
        ],
        unapplied=money("100.00"),
    )
    credit = CreditApplied(
        account_id="ACME-42",
        payment_id="P-D",
        invoice_id="INV-C",
        amount=money("98.00"),
        discount=money("2.00"),
        credit_left=money("2.00"),
        applied_at=AT,  # type: ignore[arg-type]
    )
    chunk = [
        make_envelope(payment, tenant="acme", source="/payment-svc", time=payment.received_at),
        make_envelope(credit, tenant="acme", source="/payment-svc", time=credit.applied_at),
    ]
    async with runtime.database.transaction() as session:
        await commands.apply_payments(session, runtime.outbox, chunk)
    d, c = await get(client, "INV-D"), await get(client, "INV-C")
    assert (d["status"], d["amount_paid"], d["credited"], d["balance"]) == (
        "paid",
        "980.00",
        "20.00",
        "0.00",
    )
    assert (c["status"], c["amount_paid"], c["credited"]) == ("paid", "98.00", "2.00")
    settled = of(InvoiceSettled, await published(invoice_settings, 2 + 2))
    assert {s.invoice_id: s.amount_paid.amount for s in settled} == {
        "INV-D": Decimal("980.00"),
        "INV-C": Decimal("98.00"),
    }

    reversal = PaymentReversed(
        account_id="ACME-42",
        payment_id="P-D",
        amount=money("1080.00"),
        reason="chargeback",
        reversed_at="2026-03-03T10:00:00Z",  # type: ignore[arg-type]
        allocations=[
            Allocation(invoice_id="INV-D", amount=money("980.00"), discount=money("20.00")),
            Allocation(invoice_id="INV-C", amount=money("98.00"), discount=money("2.00")),
        ],
    )
    async with runtime.database.transaction() as session:
        await commands.apply_payments(
            session,
            runtime.outbox,
            [
                make_envelope(
                    reversal, tenant="acme", source="/payment-svc", time=reversal.reversed_at
                )
            ],
        )
    d, c = await get(client, "INV-D"), await get(client, "INV-C")
    assert (d["status"], d["amount_paid"], d["credited"], d["balance"]) == (
        "open",
        "0.00",
        "0.00",
        "1000.00",
    )
    assert (c["status"], c["balance"]) == ("open", "100.00")
