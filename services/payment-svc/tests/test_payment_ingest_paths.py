"""The batch ingest's fast paths store and answer exactly what the plain ones did.

On PostgreSQL a batch's payments, applications and changed invoices are written with one
``INSERT … unnest`` / ``UPDATE … FROM unnest`` per table (``dunning_runtime.bulk``)
instead of SQLAlchemy Core's statements, and its lookups use one plain ``IN`` per tenant
instead of a row-value ``IN``. The same mixed batch (created, invalid, replayed,
conflicting, held for an unknown invoice) is posted by two tenants, one of them through
the plain Core path, and everything stored must match: payments, applications, the
invoice view, outbox events, idempotency records.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from payment_fixtures import ACME, GLOBEX, feed, issued, payment
from sqlalchemy import Table, select

from dunning_runtime import bulk
from dunning_runtime.messaging_tables import idempotency_keys
from payment_svc import storage
from tests.support.events import alike, recording


def mixed_batch() -> list[Any]:
    return [
        payment(payment_id="B-1", amount="300.00"),
        payment(payment_id="B-2", amount="300.00"),  # sees B-1: only part is still open
        payment(payment_id="B-3", amount="1.001"),
        "not an object",
        payment(payment_id="B-1", amount="300.00"),  # a replay
        payment(payment_id="B-1", amount="301.00"),  # a conflict
        payment(payment_id="B-4", allocations=[{"invoice_id": "INV-1", "amount": "1.00"}]),
        payment(
            payment_id="B-5",
            amount="50.00",
            allocations=[
                {"invoice_id": "INV-2", "amount": "20.00"},
                {"invoice_id": "INV-LATER", "amount": "30.00"},  # held until it arrives
            ],
        ),
        payment(payment_id="B-6", account_id="ACME-7", amount="10.00", metadata={}),
    ]


async def _post_as(client: httpx.AsyncClient, tenant: str, headers: dict[str, str]) -> Any:
    await feed(client, issued("INV-1", "500.00", tenant=tenant))
    await feed(client, issued("INV-2", "400.00", tenant=tenant, discount=("2", 10)))
    response = await client.post(
        "/v1/payments/batch",
        json={"payments": mixed_batch()},
        headers={**headers, "Idempotency-Key": "batch-1"},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _rows(client: httpx.AsyncClient, table: Table, tenant: str) -> list[dict[str, Any]]:
    database = client.app.state.runtime.database  # type: ignore[attr-defined]
    async with database.sessions() as session:
        rows = (
            await session.execute(
                select(table).where(table.c.tenant == tenant).order_by(table.c.seq)
            )
        ).mappings()
        return [{k: v for k, v in r.items() if k not in ("seq", "tenant")} for r in rows]


async def _keys(client: httpx.AsyncClient, tenant: str) -> list[tuple[Any, ...]]:
    database = client.app.state.runtime.database  # type: ignore[attr-defined]
    async with database.sessions() as session:
        keys = await session.execute(
            select(idempotency_keys.c.status_code, idempotency_keys.c.response).where(
                idempotency_keys.c.tenant == tenant
            )
        )
        return [tuple(k) for k in keys]


async def test_the_bulk_writes_store_what_core_stores(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = recording(client.app.state.runtime.outbox)  # type: ignore[attr-defined]
    fast = await _post_as(client, "acme", ACME)
    fast_events, staged[:] = alike(staged, "acme"), []
    with monkeypatch.context() as plain:
        plain.setattr(bulk, "is_postgresql", lambda _session: False)
        core = await _post_as(client, "globex", GLOBEX)
    assert fast == core
    assert [r["status"] for r in fast["results"]] == [201, 201, 422, 422, 200, 409, 422, 201, 201]
    for table in (storage.payments, storage.applications, storage.invoices):
        assert await _rows(client, table, "acme") == await _rows(client, table, "globex")
    assert len(await _rows(client, storage.applications, "acme")) >= 4
    assert await _keys(client, "acme") == await _keys(client, "globex") != []
    assert fast_events == alike(staged, "globex")
    assert len(fast_events) >= 4
