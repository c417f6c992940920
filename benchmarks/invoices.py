"""invoice-svc: batch ingest over its HTTP API, and one overdue tick over all of it.

The app runs in-process (httpx's ASGI transport), so the figures are the
service and its database, without network or JSON-over-TCP costs.
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI

from benchmarks.isolation import ADMIN, AUTH, isolated, served
from dunning_runtime.app import create_app
from invoice_svc.main import SPEC


def body(i: int) -> dict[str, object]:
    return {
        "invoice_id": f"INV-{i:07d}",
        "account_id": f"ACC-{i % 5000:05d}",
        "account_name": "ACME GmbH",
        "contact": {"name": "Dana Fischer", "email": "ap@acme.example"},
        "currency": "EUR",
        "amount_due": "1250.00",
        "issue_date": "2026-02-01",
        "due_date": "2026-03-03",
        "timezone": "Europe/Berlin",
        "lines": [
            {
                "description": "Consulting",
                "quantity": "10",
                "unit_price": "125.00",
                "amount": "1250.00",
            }
        ],
    }


async def run(count: int, data_dir: Path) -> dict[str, float]:
    """Post ``count`` invoices in batches of 1,000, then tick once past their due date;
    returns the figures."""
    async with isolated(SPEC, data_dir, clock="manual") as settings:
        return await _measure(count, create_app(SPEC, settings))


async def _measure(count: int, app: FastAPI) -> dict[str, float]:
    async with served(app) as client:
        await client.put("/v1/admin/clock", json={"now": "2026-03-01T09:00:00Z"}, headers=ADMIN)
        started = time.perf_counter()
        for start in range(0, count, 1000):
            batch = [body(i) for i in range(start, min(count, start + 1000))]
            response = await client.post(
                "/v1/invoices/batch", json={"invoices": batch}, headers=AUTH
            )
            assert response.json()["accepted"] == len(batch), response.text[:500]
        ingest = count / (time.perf_counter() - started)
        await app.state.runtime.relay.flush()
        await client.put("/v1/admin/clock", json={"now": "2026-03-10T09:00:00Z"}, headers=ADMIN)
        started = time.perf_counter()
        tick = await client.post("/v1/admin/tick", headers=ADMIN)
        tick_rate = count / (time.perf_counter() - started)
        assert tick.status_code == 200, tick.text
    return {"ingest_invoices_per_s": ingest, "overdue_tick_invoices_per_s": tick_rate}
