"""payment-svc's view of invoices: built from invoice events only, and the credit a new
invoice takes."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
from payment_fixtures import ACME, START, feed, get, issued, payment, published, voided

from dunning_events import (
    CreditApplied,
    InvoiceDisputeResolved,
    InvoiceSettled,
    Money,
    PaymentReceived,
    PaymentReversed,
    make_envelope,
)
from dunning_events.samples import sample_event


def resolved(invoice_id: str, credited: str) -> Any:
    event = sample_event(
        InvoiceDisputeResolved,
        account_id="ACME-42",
        invoice_id=invoice_id,
        resolution="upheld",
        credited_amount=Money(amount=credited, currency="EUR"),  # type: ignore[arg-type]
        balance=Money(amount="0.00", currency="EUR"),  # type: ignore[arg-type]
    )
    return make_envelope(event, tenant="acme", source="/invoice-svc", time=START)  # type: ignore[arg-type]


def settled(invoice_id: str) -> Any:
    event = sample_event(InvoiceSettled, account_id="ACME-42", invoice_id=invoice_id)
    return make_envelope(event, tenant="acme", source="/invoice-svc", time=START)  # type: ignore[arg-type]


async def test_voids_and_upheld_disputes_change_what_a_payment_can_pay(
    client: httpx.AsyncClient,
) -> None:
    await feed(
        client,
        issued("INV-1", "100.00", due=date(2026, 3, 5)),
        issued("INV-2", "100.00", due=date(2026, 3, 6)),
        issued("INV-3", "100.00", due=date(2026, 3, 7)),
    )
    await feed(client, voided("INV-1"), resolved("INV-2", "60.00"), settled("INV-3"))
    body = (await client.post("/v1/payments", json=payment(amount="500.00"), headers=ACME)).json()
    assert [(a["invoice_id"], a["amount"]) for a in body["allocations"]] == [
        ("INV-2", "40.00"),
        ("INV-3", "100.00"),
    ]
    assert body["credit"] == "360.00"


async def test_an_invoice_delivered_twice_takes_credit_once(client: httpx.AsyncClient) -> None:
    await client.post("/v1/payments", json=payment(amount="300.00"), headers=ACME)
    first = issued("INV-1", "100.00")
    again = issued("INV-1", "100.00")  # the same invoice in a new event (another id)
    await feed(client, first, again)
    await feed(client, issued("INV-1", "100.00"))
    assert (await get(client, "PAY-1"))["credit"] == "200.00"
    events = await published(client, 2)
    assert [type(e) for e in events] == [PaymentReceived, CreditApplied]


async def test_credit_goes_to_new_invoices_oldest_payment_first_in_their_currency(
    client: httpx.AsyncClient,
) -> None:
    await client.post(
        "/v1/payments",
        json=payment(payment_id="P-OLD", amount="80.00", received_at="2026-02-01T10:00:00Z"),
        headers=ACME,
    )
    await client.post(
        "/v1/payments",
        json=payment(payment_id="P-NEW", amount="80.00", received_at="2026-02-15T10:00:00Z"),
        headers=ACME,
    )
    await client.post(
        "/v1/payments",
        json=payment(payment_id="P-USD", amount="80.00", currency="USD"),
        headers=ACME,
    )
    await feed(client, issued("INV-1", "100.00"), issued("INV-OTHER", "50.00", account="ACME-7"))
    old, new, usd = [await get(client, p) for p in ("P-OLD", "P-NEW", "P-USD")]
    assert (old["credit"], old["status"]) == ("0.00", "applied")
    assert (new["credit"], new["status"]) == ("60.00", "partially_applied")
    assert (usd["credit"], usd["status"]) == ("80.00", "unapplied")
    credit = (await client.get("/v1/accounts/ACME-42/credit", headers=ACME)).json()["credit"]
    assert [(c["currency"], c["credit"]) for c in credit] == [("EUR", "60.00"), ("USD", "80.00")]


async def test_a_hold_for_an_invoice_in_another_currency_becomes_credit(
    client: httpx.AsyncClient,
) -> None:
    body = payment(amount="100.00", allocations=[{"invoice_id": "INV-1", "amount": "100.00"}])
    await client.post("/v1/payments", json=body, headers=ACME)
    await feed(client, issued("INV-1", "100.00", currency="USD"))
    after = await get(client, "PAY-1")
    assert (after["held"], after["credit"], after["allocations"]) == ([], "100.00", [])


async def test_a_reversal_undoes_credit_applied_later_and_drops_holds(
    client: httpx.AsyncClient,
) -> None:
    body = payment(amount="500.00", allocations=[{"invoice_id": "INV-HELD", "amount": "100.00"}])
    await client.post("/v1/payments", json=body, headers=ACME)
    await feed(client, issued("INV-LATER", "150.00"))
    reversed_ = await client.post(
        "/v1/payments/PAY-1/reverse", json={"reason": "chargeback"}, headers=ACME
    )
    assert reversed_.status_code == 200
    assert reversed_.json()["held"] == []
    events = await published(client, 3)
    assert [type(e) for e in events] == [PaymentReceived, CreditApplied, PaymentReversed]
    reversal = events[-1]
    assert [(a.invoice_id, str(a.amount.amount)) for a in reversal.allocations] == [
        ("INV-LATER", "150.00")
    ]
    assert reversal.credit_voided is not None and str(reversal.credit_voided.amount) == "350.00"
    # The hold is gone: the invoice it named arrives unpaid.
    await feed(client, issued("INV-HELD", "100.00"))
    assert len(await published(client, 3)) == 3
