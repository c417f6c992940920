"""payment-svc's HTTP API: every route and its error paths, on the active backend."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest
from payment_fixtures import ACME, GLOBEX, feed, get, issued, payment, published, voided

from dunning_events import CreditApplied, PaymentReceived, PaymentReversed


async def test_a_payment_pays_the_oldest_invoices_and_keeps_the_rest_as_credit(
    client: httpx.AsyncClient,
) -> None:
    await feed(
        client,
        issued("INV-2", "300.00", due=date(2026, 3, 20)),
        issued("INV-1", "500.00", due=date(2026, 3, 10)),
    )
    response = await client.post("/v1/payments", json=payment(amount="1000.00"), headers=ACME)
    assert response.status_code == 201, response.text
    body = response.json()
    assert [(a["invoice_id"], a["amount"]) for a in body["allocations"]] == [
        ("INV-1", "500.00"),
        ("INV-2", "300.00"),
    ]
    assert (body["status"], body["credit"], body["unapplied"]) == (
        "partially_applied",
        "200.00",
        "200.00",
    )
    [event] = await published(client, 1)
    assert isinstance(event, PaymentReceived)
    assert event.unapplied.amount == 200 and len(event.allocations) == 2

    credit = (await client.get("/v1/accounts/ACME-42/credit", headers=ACME)).json()
    assert credit["credit"] == [
        {
            "currency": "EUR",
            "credit": "200.00",
            "held": "0.00",
            "payments": [
                {
                    "payment_id": "PAY-1",
                    "received_at": "2026-03-01T09:00:00Z",
                    "credit": "200.00",
                    "held": "0.00",
                }
            ],
        }
    ]
    # The credit pays the next invoice as it arrives.
    await feed(client, issued("INV-3", "150.00"))
    applied = [e for e in await published(client, 2) if isinstance(e, CreditApplied)]
    assert [(e.invoice_id, e.amount.amount, e.credit_left.amount) for e in applied] == [
        ("INV-3", 150, 50)
    ]
    after = await get(client, "PAY-1")
    assert after["credit"] == "50.00"
    assert after["allocations"][-1]["kind"] == "credit"


async def test_replays_conflicts_and_idempotency_keys(client: httpx.AsyncClient) -> None:
    first = await client.post("/v1/payments", json=payment(), headers=ACME)
    assert first.status_code == 201
    again = await client.post("/v1/payments", json=payment(), headers=ACME)
    assert (again.status_code, again.json()) == (200, first.json())
    other = await client.post(
        "/v1/payments", json=payment(amount="999.00", method="wire"), headers=ACME
    )
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert {e["field"] for e in other.json()["errors"]} == {"body.amount", "body.method"}

    keyed = {**ACME, "Idempotency-Key": "k-1"}
    made = await client.post("/v1/payments", json=payment(payment_id="PAY-2"), headers=keyed)
    replayed = await client.post("/v1/payments", json=payment(payment_id="PAY-2"), headers=keyed)
    assert (made.status_code, replayed.status_code) == (201, 200)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    events = await published(client, 2)
    assert [e.payment_id for e in events] == ["PAY-1", "PAY-2"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": "10.001"}, "body.amount"),
        ({"amount": "0.00"}, "body.amount"),
        ({"amount": "-5.00"}, "body.amount"),
        ({"currency": "XXX"}, "body.currency"),
        ({"method": "bitcoin"}, "body.method"),
        ({"payment_id": "batch"}, "body.payment_id"),
        ({"payment_id": ".."}, "body.payment_id"),
        ({"received_at": "2026-03-01T10:00:00"}, "body.received_at"),
        ({"allocations": [{"invoice_id": "INV-1", "amount": "1.001"}]}, "body.allocations"),
        ({"surprise": 1}, "body.surprise"),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(
    client: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/payments", json=payment(**changes), headers=ACME)
    assert response.status_code == 422, response.text
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()


async def test_allocations_the_rules_refuse_are_422_naming_the_allocation(
    client: httpx.AsyncClient,
) -> None:
    await feed(
        client,
        issued("INV-1", "500.00"),
        issued("INV-V", "50.00"),
        voided("INV-V"),
        issued("INV-USD", "50.00", currency="USD"),
    )
    cases = {
        "body.allocations[0].amount": [{"invoice_id": "INV-1", "amount": "500.01"}],
        "body.allocations[1].invoice_id": [
            {"invoice_id": "INV-1", "amount": "1.00"},
            {"invoice_id": "INV-V", "amount": "1.00"},
        ],
        "body.allocations[0].invoice_id": [{"invoice_id": "INV-USD", "amount": "1.00"}],
        "body.allocations": [
            {"invoice_id": "INV-1", "amount": "500.00"},
            {"invoice_id": "X", "amount": "600.00"},
        ],
    }
    for field, allocations in cases.items():
        response = await client.post(
            "/v1/payments", json=payment(allocations=allocations), headers=ACME
        )
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == [field]
    # Nothing was stored: the same id is still free.
    assert (await client.post("/v1/payments", json=payment(), headers=ACME)).status_code == 201


async def test_an_allocation_to_an_invoice_not_yet_known_is_held_until_it_arrives(
    client: httpx.AsyncClient,
) -> None:
    body = payment(amount="700.00", allocations=[{"invoice_id": "INV-9", "amount": "600.00"}])
    created = (await client.post("/v1/payments", json=body, headers=ACME)).json()
    assert created["held"] == [{"invoice_id": "INV-9", "amount": "600.00"}]
    assert (created["status"], created["credit"], created["unapplied"]) == (
        "unapplied",
        "100.00",
        "700.00",
    )
    # The invoice is smaller than the hold: capped, and the rest is credit.
    await feed(client, issued("INV-9", "450.00"))
    after = await get(client, "PAY-1")
    assert after["held"] == []
    assert [(a["invoice_id"], a["amount"], a["kind"]) for a in after["allocations"]] == [
        ("INV-9", "450.00", "credit")
    ]
    assert (after["credit"], after["status"]) == ("250.00", "partially_applied")


async def test_batch_results_per_item_in_order(client: httpx.AsyncClient) -> None:
    await feed(client, issued("INV-1", "500.00"))
    items: list[Any] = [
        payment(payment_id="B-1", amount="300.00"),
        payment(payment_id="B-2", amount="300.00"),  # sees B-1: only 200.00 is still open
        payment(payment_id="B-3", amount="1.001"),
        "not an object",
        payment(payment_id="B-1", amount="300.00"),  # the same as the first: a replay
        payment(payment_id="B-4", allocations=[{"invoice_id": "INV-1", "amount": "1.00"}]),
    ]
    response = await client.post("/v1/payments/batch", json={"payments": items}, headers=ACME)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["status"] for r in body["results"]] == [201, 201, 422, 422, 200, 422]
    assert (body["accepted"], body["rejected"]) == (3, 3)
    assert body["results"][1]["payment"]["allocations"][0]["amount"] == "200.00"
    assert body["results"][2]["problem"]["errors"][0]["field"] == "body.payments[2].amount"
    assert body["results"][5]["problem"]["errors"][0]["field"] == (
        "body.payments[5].allocations[0].amount"
    )
    too_many = {"payments": [payment(payment_id=f"X-{n}") for n in range(1001)]}
    assert (await client.post("/v1/payments/batch", json=too_many, headers=ACME)).status_code == 422


async def test_reading_listing_and_tenants(client: httpx.AsyncClient) -> None:
    for n in range(5):
        account = "ACME-42" if n % 2 == 0 else "ACME-7"
        response = await client.post(
            "/v1/payments", json=payment(payment_id=f"P-{n}", account_id=account), headers=ACME
        )
        assert response.status_code == 201
    assert (await client.get("/v1/payments/P-0", headers=GLOBEX)).status_code == 404
    assert (await client.get("/v1/payments/NOPE", headers=ACME)).status_code == 404
    assert (await client.get("/v1/payments/P-0")).status_code == 401

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"account_id": "ACME-42", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/payments", params=params, headers=ACME)).json()
        seen += [p["payment_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["P-0", "P-2", "P-4"]
    unapplied = await client.get("/v1/payments", params={"status": "unapplied"}, headers=ACME)
    assert len(unapplied.json()["items"]) == 5
    assert (await client.get("/v1/payments", headers=GLOBEX)).json()["items"] == []
    bad = await client.get("/v1/payments", params={"cursor": "garbage"}, headers=ACME)
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "query.cursor")
    empty = (await client.get("/v1/accounts/ACME-42/credit", headers=GLOBEX)).json()
    assert empty == {"account_id": "ACME-42", "credit": []}


async def test_a_reversal_reopens_what_the_payment_paid_once(client: httpx.AsyncClient) -> None:
    await feed(
        client,
        issued("INV-1", "1000.00", issue=date(2026, 2, 25), discount=("2", 10)),
        issued("INV-2", "100.00", due=date(2026, 4, 1)),
    )
    body = payment(
        amount="1100.00",
        allocations=[  # 980.00 settles INV-1 with the 2 % discount
            {"invoice_id": "INV-1", "amount": "980.00"},
            {"invoice_id": "INV-2", "amount": "100.00"},
        ],
    )
    created = (await client.post("/v1/payments", json=body, headers=ACME)).json()
    assert [(a["invoice_id"], a["amount"], a["discount"]) for a in created["allocations"]] == [
        ("INV-1", "980.00", "20.00"),
        ("INV-2", "100.00", "0.00"),
    ]
    assert created["credit"] == "20.00"

    reverse = await client.post(
        "/v1/payments/PAY-1/reverse", json={"reason": "bounced check"}, headers=ACME
    )
    assert reverse.status_code == 200, reverse.text
    reversed_ = reverse.json()
    assert (reversed_["status"], reversed_["credit"], reversed_["reversal_reason"]) == (
        "reversed",
        "0.00",
        "bounced check",
    )
    assert all(a["reversed"] for a in reversed_["allocations"])
    event = (await published(client, 2))[-1]
    assert isinstance(event, PaymentReversed)
    assert [(a.invoice_id, a.amount.amount, a.settles()) for a in event.allocations] == [
        ("INV-1", 980, 1000),
        ("INV-2", 100, 100),
    ]
    assert event.credit_voided is not None and event.credit_voided.amount == 20

    again = await client.post("/v1/payments/PAY-1/reverse", json={"reason": "again"}, headers=ACME)
    assert again.status_code == 409
    missing = await client.post("/v1/payments/NOPE/reverse", json={"reason": "x"}, headers=ACME)
    assert missing.status_code == 404
    empty = await client.post("/v1/payments/PAY-1/reverse", json={"reason": ""}, headers=ACME)
    assert (empty.status_code, empty.json()["errors"][0]["field"]) == (422, "body.reason")
    # Both invoices are owed in full again: a new payment can pay them exactly.
    second = payment(
        payment_id="PAY-2",
        amount="1100.00",
        received_at="2026-03-20T10:00:00+01:00",
        allocations=[
            {"invoice_id": "INV-1", "amount": "1000.00"},
            {"invoice_id": "INV-2", "amount": "100.00"},
        ],
    )
    response = await client.post("/v1/payments", json=second, headers=ACME)
    assert (response.status_code, response.json()["status"]) == (201, "applied")
