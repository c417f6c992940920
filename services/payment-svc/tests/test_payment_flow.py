"""payment-svc and invoice-svc together on a real bus: every invoice's balance ends the
same in both services, whatever order invoices and payments arrive in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from payment_fixtures import ACME, SECRETS, START, feed, issued, payment, signed

from dunning_runtime.app import create_app
from invoice_svc.main import SPEC as INVOICES
from payment_svc.main import SPEC as PAYMENTS
from tests.support.fixtures import ADMIN, running, until


@dataclass
class Stack:
    invoices: httpx.AsyncClient
    payments: httpx.AsyncClient

    async def move_clock(self, instant: str) -> None:
        for client in (self.invoices, self.payments):
            response = await client.put("/v1/admin/clock", json={"now": instant}, headers=ADMIN)
            assert response.status_code == 200, response.text

    async def invoice(self, invoice_id: str, amount: str, **changes: Any) -> None:
        body: dict[str, Any] = {
            "invoice_id": invoice_id,
            "account_id": "ACME-42",
            "account_name": "ACME GmbH",
            "contact": {"name": "Dana Fischer", "email": "ap@acme.example"},
            "currency": "EUR",
            "amount_due": amount,
            "issue_date": "2026-03-01",
            "due_date": "2026-03-31",
            "timezone": "Europe/Berlin",
        }
        body.update(changes)
        response = await self.invoices.post("/v1/invoices", json=body, headers=ACME)
        assert response.status_code == 201, response.text

    async def pay(self, **changes: Any) -> dict[str, Any]:
        response = await self.payments.post("/v1/payments", json=payment(**changes), headers=ACME)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def invoice_body(self, invoice_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (
            await self.invoices.get(f"/v1/invoices/{invoice_id}", headers=ACME)
        ).json()
        return body

    async def settles_to(self, expected: dict[str, tuple[str, str]]) -> None:
        """Wait until invoice-svc shows each invoice with ``(status, balance)``."""

        async def reached() -> bool:
            for invoice_id, wanted in expected.items():
                body = await self.invoice_body(invoice_id)
                if (body["status"], body["balance"]) != wanted:
                    return False
            return True

        await until(reached, what=f"invoice-svc reaching {expected}")


@pytest.fixture
async def stack(settings_factory) -> AsyncIterator[Stack]:
    invoice_settings = settings_factory("invoice-svc", clock="manual")
    payment_settings = settings_factory("payment-svc", clock="manual", webhook_secrets=SECRETS)
    async with (
        running(create_app(INVOICES, invoice_settings)) as invoices,
        running(create_app(PAYMENTS, payment_settings)) as payments,
    ):
        stack = Stack(invoices, payments)
        await stack.move_clock(START)
        yield stack


async def payment_view_has(stack: Stack, payment_id: str, key: str, value: Any) -> None:
    async def check() -> bool:
        body = (await stack.payments.get(f"/v1/payments/{payment_id}", headers=ACME)).json()
        return bool(body.get(key) == value)

    await until(check, what=f"{payment_id}.{key} == {value}")


async def test_a_payment_before_its_invoice_ends_with_the_invoice_paid(stack: Stack) -> None:
    await stack.pay(
        payment_id="P-EARLY",
        amount="500.00",
        allocations=[{"invoice_id": "INV-1", "amount": "500.00"}],
    )
    await stack.invoice("INV-1", "400.00")
    await stack.settles_to({"INV-1": ("paid", "0.00")})
    await payment_view_has(stack, "P-EARLY", "credit", "100.00")
    body = await stack.invoice_body("INV-1")
    assert body["amount_paid"] == "400.00"


async def test_credit_from_an_overpayment_pays_the_next_invoice(stack: Stack) -> None:
    await stack.invoice("INV-1", "100.00")
    await payment_view_has_invoice(stack, "INV-1")
    await stack.pay(payment_id="P-OVER", amount="250.00")
    await stack.settles_to({"INV-1": ("paid", "0.00")})
    await stack.invoice("INV-2", "200.00")
    await stack.settles_to({"INV-2": ("partially_paid", "50.00")})
    await payment_view_has(stack, "P-OVER", "status", "applied")


async def payment_view_has_invoice(stack: Stack, invoice_id: str) -> None:
    """Wait until payment-svc's view knows the invoice (its InvoiceIssued was consumed)."""
    runtime = stack.payments._transport.app.state.runtime  # type: ignore[attr-defined]
    from sqlalchemy import select

    from payment_svc.storage import invoices

    async def known() -> bool:
        async with runtime.database.sessions() as session:
            row = (
                await session.execute(
                    select(invoices.c.seq).where(invoices.c.invoice_id == invoice_id)
                )
            ).first()
        return row is not None

    await until(known, what=f"payment-svc knowing {invoice_id}")


async def test_a_reversal_reopens_exactly_what_it_paid_and_gives_back_the_discount(
    stack: Stack,
) -> None:
    await stack.invoice(
        "INV-D", "1000.00", early_payment_discount={"percent": "2", "within_days": 10}
    )
    await stack.invoice("INV-B", "100.00")
    await stack.invoice("INV-C", "300.00")
    for invoice_id in ("INV-D", "INV-B", "INV-C"):
        await payment_view_has_invoice(stack, invoice_id)
    await stack.pay(
        payment_id="P-OTHER",
        amount="100.00",
        allocations=[{"invoice_id": "INV-C", "amount": "100.00"}],
    )
    await stack.pay(
        payment_id="P-BAD",
        amount="1080.00",
        received_at="2026-03-05T10:00:00+01:00",
        allocations=[
            {"invoice_id": "INV-D", "amount": "980.00"},
            {"invoice_id": "INV-B", "amount": "100.00"},
        ],
    )
    await stack.settles_to(
        {
            "INV-D": ("paid", "0.00"),
            "INV-B": ("paid", "0.00"),
            "INV-C": ("partially_paid", "200.00"),
        }
    )
    reversed_ = await stack.payments.post(
        "/v1/payments/P-BAD/reverse", json={"reason": "bounced check"}, headers=ACME
    )
    assert reversed_.status_code == 200, reversed_.text
    await stack.settles_to(
        {
            "INV-D": ("open", "1000.00"),
            "INV-B": ("open", "100.00"),
            "INV-C": ("partially_paid", "200.00"),
        }
    )
    d = await stack.invoice_body("INV-D")
    assert (d["amount_paid"], d["credited"]) == ("0.00", "0.00")


@pytest.mark.parametrize(
    ("received_at", "expected"),
    [
        ("2026-03-11T18:00:00+01:00", ("paid", "0.00")),  # day 10 in Berlin
        ("2026-03-12T09:00:00+01:00", ("partially_paid", "20.00")),  # day 11
    ],
)
async def test_two_ten_net_thirty_on_day_ten_and_day_eleven(
    stack: Stack, received_at: str, expected: tuple[str, str]
) -> None:
    await stack.invoice(
        "INV-1", "1000.00", early_payment_discount={"percent": "2", "within_days": 10}
    )
    await payment_view_has_invoice(stack, "INV-1")
    await stack.pay(payment_id="P-1", amount="980.00", received_at=received_at)
    await stack.settles_to({"INV-1": expected})


async def test_the_same_payment_over_http_and_by_webhook_pays_once(stack: Stack) -> None:
    await stack.invoice("INV-1", "500.00")
    await payment_view_has_invoice(stack, "INV-1")
    await stack.pay(payment_id="ch_1", amount="200.00", method="card")
    from datetime import datetime

    notice = {
        "id": "evt_1",
        "type": "payment.succeeded",
        "data": {
            "payment_id": "ch_1",
            "account_id": "ACME-42",
            "currency": "EUR",
            "amount": "200.00",
            "received_at": "2026-03-01T08:55:00Z",
        },
    }
    raw, headers = signed(
        "whsec_acme_new_0123456789", notice, int(datetime.fromisoformat(START).timestamp())
    )
    response = await stack.payments.post("/v1/webhooks/stripe", content=raw, headers=headers)
    assert response.json()["outcome"] == "already_recorded"
    await stack.settles_to({"INV-1": ("partially_paid", "300.00")})
    await asyncio.sleep(1)  # a second payment would have had its chance to arrive
    assert (await stack.invoice_body("INV-1"))["amount_paid"] == "200.00"


async def test_sixteen_concurrent_payments_for_one_account_never_over_allocate(
    client: httpx.AsyncClient,
) -> None:
    """On PostgreSQL the account lock is what serialises them; on SQLite the write lock."""
    await feed(
        client,
        *(issued(f"INV-{n}", "100.00", due=date(2026, 3, 10 + n)) for n in range(10)),
    )

    async def one(n: int) -> dict[str, Any]:
        response = await client.post(
            "/v1/payments", json=payment(payment_id=f"C-{n}", amount="75.00"), headers=ACME
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    results = await asyncio.gather(*(one(n) for n in range(16)))
    per_invoice: dict[str, Decimal] = {}
    for body in results:
        for allocation in body["allocations"]:
            per_invoice[allocation["invoice_id"]] = per_invoice.get(
                allocation["invoice_id"], Decimal(0)
            ) + Decimal(allocation["amount"])
    assert per_invoice == {f"INV-{n}": Decimal("100.00") for n in range(10)}
    credit = sum(Decimal(b["credit"]) for b in results)
    assert credit == Decimal("1200.00") - Decimal("1000.00")


async def balances_in_payment_svc(stack: Stack) -> dict[str, str]:
    """Each invoice's balance as payment-svc's own view has it."""
    from sqlalchemy import select

    from payment_svc.storage import invoice_state, invoices

    runtime = stack.payments._transport.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.database.sessions() as session:
        rows = (await session.execute(select(invoices))).mappings().all()
    return {r["invoice_id"]: f"{invoice_state(dict(r)).balance:.2f}" for r in rows}


async def test_both_services_end_with_the_same_balance_for_every_invoice(stack: Stack) -> None:
    """Invoices and payments interleaved, by age, by name, before their invoice, with a
    discount and a reversal: invoice-svc and payment-svc agree on every balance."""
    discount = {"early_payment_discount": {"percent": "2", "within_days": 10}}
    await stack.invoice("INV-A", "1000.00", due_date="2026-03-11", **discount)
    await stack.invoice("INV-B", "300.00", due_date="2026-03-20")
    await payment_view_has_invoice(stack, "INV-B")
    await stack.pay(payment_id="P1", amount="500.00")  # by age: INV-A
    await stack.pay(
        payment_id="P2", amount="200.00", allocations=[{"invoice_id": "INV-C", "amount": "200.00"}]
    )
    await stack.invoice(
        "INV-C", "150.00", due_date="2026-03-25"
    )  # held 200.00: 150.00 + credit 50.00
    await stack.invoice("INV-D", "400.00", due_date="2026-03-30")  # takes P2's 50.00
    await payment_view_has_invoice(stack, "INV-D")
    await stack.pay(
        payment_id="P3",
        amount="480.00",
        received_at="2026-03-06T10:00:00+01:00",
        allocations=[{"invoice_id": "INV-A", "amount": "480.00"}],  # 20.00 discount settles A
    )
    await stack.pay(payment_id="P4", amount="1000.00")  # B 300.00, D 350.00, credit 350.00
    reversed_ = await stack.payments.post(
        "/v1/payments/P1/reverse", json={"reason": "bounced check"}, headers=ACME
    )
    assert reversed_.status_code == 200
    await stack.invoice("INV-E", "200.00", due_date="2026-04-05")  # P4's credit pays it
    expected = {
        "INV-A": ("partially_paid", "500.00"),
        "INV-B": ("paid", "0.00"),
        "INV-C": ("paid", "0.00"),
        "INV-D": ("paid", "0.00"),
        "INV-E": ("paid", "0.00"),
    }
    await stack.settles_to(expected)

    async def agree() -> bool:
        return await balances_in_payment_svc(stack) == {k: v[1] for k, v in expected.items()}

    await until(agree, what="payment-svc's view matching invoice-svc")
    credit = (await stack.payments.get("/v1/accounts/ACME-42/credit", headers=ACME)).json()
    assert [(c["currency"], c["credit"]) for c in credit["credit"]] == [("EUR", "150.00")]
