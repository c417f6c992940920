"""payment-svc test helpers: keys, bodies, invoice events fed to the view."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import httpx

from dunning_events import (
    EarlyPaymentDiscount,
    Envelope,
    InvoiceIssued,
    InvoiceVoided,
    Money,
    Terms,
    make_envelope,
)
from dunning_events.samples import sample_event
from dunning_runtime.signing import sign
from payment_svc import commands

ACME = {"Authorization": "Bearer acme-key"}
GLOBEX = {"Authorization": "Bearer globex-key"}
START = "2026-03-01T09:00:00Z"
#: Two stripe secrets for acme (a rotation), one each for globex.
STRIPE_NEW = "whsec_acme_new_0123456789"
STRIPE_OLD = "whsec_acme_old_0123456789"
GLOBEX_STRIPE = "whsec_globex_0123456789"
SECRETS = (
    f"acme:stripe:{STRIPE_NEW},acme:stripe:{STRIPE_OLD},"
    f"globex:stripe:{GLOBEX_STRIPE},acme:adyen:adyen_acme_0123456789"
)


def payment(**changes: Any) -> dict[str, Any]:
    """A valid payment body, with ``changes`` applied."""
    body: dict[str, Any] = {
        "payment_id": "PAY-1",
        "account_id": "ACME-42",
        "currency": "EUR",
        "amount": "1000.00",
        "received_at": "2026-03-01T10:00:00+01:00",
        "method": "sepa",
        "reference": "INV-1",
        "metadata": {"erp_document": "7001"},
    }
    body.update(changes)
    return body


def issued(
    invoice_id: str,
    amount: str,
    *,
    account: str = "ACME-42",
    currency: str = "EUR",
    issue: date = date(2026, 2, 1),
    due: date = date(2026, 3, 3),
    discount: tuple[str, int] | None = None,
    tenant: str = "acme",
) -> Envelope:
    """An ``InvoiceIssued`` envelope as invoice-svc would publish it."""
    terms = Terms(
        net_days=30,
        early_payment_discount=EarlyPaymentDiscount(percent=discount[0], within_days=discount[1])  # type: ignore[arg-type]
        if discount
        else None,
    )
    event = sample_event(
        InvoiceIssued,
        account_id=account,
        invoice_id=invoice_id,
        amount_due=Money(amount=amount, currency=currency),  # type: ignore[arg-type]
        issue_date=issue,
        due_date=due,
        timezone="Europe/Berlin",
        terms=terms,
        lines=[],
    )
    return make_envelope(event, tenant=tenant, source="/invoice-svc", time=START)  # type: ignore[arg-type]


def voided(invoice_id: str, *, account: str = "ACME-42") -> Envelope:
    """An ``InvoiceVoided`` envelope."""
    event = sample_event(
        InvoiceVoided,
        account_id=account,
        invoice_id=invoice_id,
        balance_voided=Money(amount="0.00", currency="EUR"),  # type: ignore[arg-type]
    )
    return make_envelope(event, tenant="acme", source="/invoice-svc", time=START)  # type: ignore[arg-type]


async def feed(client: httpx.AsyncClient, *envelopes: Envelope) -> None:
    """Apply invoice events to payment-svc's view, as its consumer does, in one chunk."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.database.transaction() as session:
        await commands.apply_invoice_events(session, runtime.scope, list(envelopes))


def signed(
    secret: str, body: dict[str, Any] | bytes, timestamp: int
) -> tuple[bytes, dict[str, str]]:
    """A webhook body and its headers, signed with ``secret`` at ``timestamp``."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {
        "Dunning-Signature": sign(secret, timestamp, raw),
        "Content-Type": "application/json",
    }


async def get(client: httpx.AsyncClient, payment_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/payments/{payment_id}", headers=ACME)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def published(client: httpx.AsyncClient, count: int, *, timeout: float = 30) -> list[Any]:
    """The payloads of the first ``count`` events on the payments topic, and any more
    that arrive within a second after them (callers check there are none)."""
    import asyncio
    import uuid

    from dunning_events import topics
    from dunning_events.codec import from_kafka
    from dunning_runtime.bus import create_bus

    settings = client.app.state.runtime.settings  # type: ignore[attr-defined]
    bus = create_bus(settings)
    await bus.start()
    reader = bus.consumer(f"reader-{uuid.uuid4().hex[:8]}", [topics.PAYMENTS])
    await reader.start()
    records: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while len(records) < count and loop.time() < deadline:
            records += await reader.poll(0.5, 1000)
        records += await reader.poll(1.0, 1000)
    finally:
        await reader.stop()
        await bus.close()
    return [from_kafka(r.key, r.value, r.headers).data for r in records]
