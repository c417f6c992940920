"""payment-svc: batch ingest of payments over its HTTP API, each applied to its account's
open invoices.

The app runs in-process (httpx's ASGI transport), so the figure is the service and its
database, without network or JSON-over-TCP costs. Before the clock starts, the invoices
the payments pay are fed to payment-svc's view through its own consumer, as the invoices
topic would deliver them.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

from fastapi import FastAPI

from benchmarks.isolation import ADMIN, AUTH, isolated, served
from dunning_events import Contact, InvoiceIssued, Money, make_envelope
from dunning_runtime.app import create_app
from payment_svc.commands import apply_invoice_events
from payment_svc.main import SPEC

ACCOUNTS = 5000
NOW = "2026-03-01T09:00:00Z"


def account(i: int) -> str:
    return f"ACC-{i % ACCOUNTS:05d}"


def payment(i: int) -> dict[str, object]:
    """A payment of 300.00: it pays its account's oldest open invoices (250.00 each)."""
    return {
        "payment_id": f"PAY-{i:07d}",
        "account_id": account(i),
        "currency": "EUR",
        "amount": "300.00",
        "received_at": "2026-03-05T10:00:00+01:00",
        "method": "sepa",
        "reference": f"remittance {i}",
    }


def invoice(i: int) -> InvoiceIssued:
    return InvoiceIssued(
        account_id=account(i),
        invoice_id=f"INV-{i:07d}",
        account_name="ACME GmbH",
        contact=Contact(name="Dana Fischer", email="ap@acme.example"),
        amount_due=Money(amount="250.00", currency="EUR"),
        issue_date=date(2026, 2, 1),
        due_date=date(2026, 3, 3) + timedelta(days=i // ACCOUNTS),
        timezone="Europe/Berlin",
    )


async def run(count: int, data_dir: Path) -> dict[str, float]:
    """Post ``count`` payments in batches of 1,000 against about 1.25 open invoices each;
    returns the figure."""
    async with isolated(SPEC, data_dir, clock="manual") as settings:
        return await _measure(count, create_app(SPEC, settings))


async def _measure(count: int, app: FastAPI) -> dict[str, float]:
    async with served(app) as client:
        await client.put("/v1/admin/clock", json={"now": NOW}, headers=ADMIN)
        runtime = app.state.runtime
        invoices = count + count // 4
        for start in range(0, invoices, 500):
            envelopes = [
                make_envelope(invoice(i), tenant="bench", source="/invoice-svc", time=NOW)  # type: ignore[arg-type]
                for i in range(start, min(invoices, start + 500))
            ]
            async with runtime.database.transaction() as session:
                await apply_invoice_events(session, runtime.scope, envelopes)
        started = time.perf_counter()
        for start in range(0, count, 1000):
            batch = [payment(i) for i in range(start, min(count, start + 1000))]
            response = await client.post(
                "/v1/payments/batch", json={"payments": batch}, headers=AUTH
            )
            assert response.json()["accepted"] == len(batch), response.text[:500]
        ingest = count / (time.perf_counter() - started)
        await runtime.relay.flush()
    return {"ingest_payments_per_s": ingest}
