"""The batch ingest's fast paths store and answer exactly what the plain ones did.

On PostgreSQL the new invoices go in with one ``INSERT … unnest`` (``dunning_runtime.bulk``)
instead of SQLAlchemy Core's INSERT; a new invoice's view takes the posted model's parts
instead of validating the stored JSON again. The same mixed batch (created, invalid,
replayed, conflicting) is posted by two tenants, one of them through the plain Core path,
and everything stored must match: invoice rows, the events staged in the outbox,
idempotency records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from invoice_fixtures import ACME, GLOBEX, invoice
from sqlalchemy import select

from dunning_runtime import bulk
from dunning_runtime.messaging_tables import idempotency_keys
from invoice_svc import storage
from invoice_svc.domain import InvoiceStatus, Standing
from invoice_svc.models import InvoiceIn
from invoice_svc.views import invoice_view
from tests.support.events import alike, recording

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)


@pytest.fixture
def invoice_settings(settings_factory: Any) -> Any:
    """Both tenants alike (no grace days of acme's own): their batches store the same."""
    return settings_factory("invoice-svc", clock="manual")


def mixed_batch() -> list[Any]:
    return [
        invoice(invoice_id="B-1"),
        invoice(invoice_id="B-2", amount_due="oops"),
        invoice(invoice_id="OLD"),
        invoice(invoice_id="OLD", amount_due="1.00", lines=[]),
        invoice(invoice_id="B-1"),
        "not an object",
        invoice(invoice_id="B-3", currency="USD", late_fee=None, early_payment_discount=None),
        invoice(invoice_id="B-4", lines=[], metadata={}, terms=None, contact={"name": " X "}),
    ]


async def _post_as(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    await client.post("/v1/invoices", json=invoice(invoice_id="OLD"), headers=headers)
    response = await client.post(
        "/v1/invoices/batch",
        json={"invoices": mixed_batch()},
        headers={**headers, "Idempotency-Key": "batch-1"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _stored(client: httpx.AsyncClient, tenant: str) -> dict[str, Any]:
    database = client.app.state.runtime.database  # type: ignore[attr-defined]
    async with database.sessions() as session:
        rows = (
            await session.execute(
                select(storage.invoices)
                .where(storage.invoices.c.tenant == tenant)
                .order_by(storage.invoices.c.seq)
            )
        ).mappings()
        # Each request has a trace of its own when an earlier test installed a tracer: the
        # stored trace context is compared by whether there is one.
        invoices = [
            {k: (v is not None if k == "traceparent" else v) for k, v in r.items()} for r in rows
        ]
        for row in invoices:
            del row["seq"], row["tenant"]
        keys = (
            await session.execute(
                select(idempotency_keys.c.status_code, idempotency_keys.c.response).where(
                    idempotency_keys.c.tenant == tenant
                )
            )
        ).all()
    return {"invoices": invoices, "keys": [tuple(k) for k in keys]}


async def test_the_bulk_insert_stores_what_core_stores(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = recording(client.app.state.runtime.outbox)  # type: ignore[attr-defined]
    fast = await _post_as(client, ACME)
    fast_events, staged[:] = alike(staged, "acme"), []
    with monkeypatch.context() as plain:
        plain.setattr(bulk, "is_postgresql", lambda _session: False)
        core = await _post_as(client, GLOBEX)
    assert fast == core
    assert [r["status"] for r in fast["results"]] == [201, 422, 200, 409, 200, 422, 201, 201]
    fast_stored = await _stored(client, "acme")
    core_stored = await _stored(client, "globex")
    assert len(fast_stored["invoices"]) == 4
    assert fast_stored["keys"] == core_stored["keys"] != []
    for f, c in zip(fast_stored["invoices"], core_stored["invoices"], strict=True):
        assert {k: v for k, v in f.items() if v != c[k]} == {}, c
    assert fast_stored["invoices"] == core_stored["invoices"]
    assert fast_events == alike(staged, "globex")
    assert len(fast_events) == 4  # InvoiceIssued of OLD, B-1, B-3 and B-4


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"terms": None, "early_payment_discount": None, "late_fee": None, "lines": []},
        {"contact": {"name": "  Dana  ", "email": "AP@acme.example"}, "metadata": {}},
        {"late_fee": {"kind": "flat", "amount": "40.00"}, "locale": "en"},
        {"currency": "JPY", "amount_due": "1250", "lines": [], "late_fee": None},
    ],
)
def test_a_new_invoices_view_from_its_posted_parts_is_the_stored_ones(
    changes: dict[str, Any],
) -> None:
    posted = InvoiceIn.model_validate(invoice(**changes))
    row = storage.new_row(
        posted,
        posted.model_dump(mode="json"),
        tenant="acme",
        now=NOW,
        overdue_at=NOW,
        paid_minor=0,
        standing=Standing(status=InvoiceStatus.OPEN, chase_pending=True, settled_at=None),
        traceparent=None,
    )
    assert (
        invoice_view(row, NOW, posted).model_dump_json() == invoice_view(row, NOW).model_dump_json()
    )
