"""Per-account serialisation (issue 6, §4): races between HTTP commands and payments.

These drive the service's own use cases on two real transactions, interleaved on
purpose, on the active backend (PostgreSQL's READ COMMITTED is where they bite;
SQLite's BEGIN IMMEDIATE serialises writers anyway).
"""

from __future__ import annotations

import asyncio
import random

import httpx
from invoice_fixtures import ACME, invoice

from dunning_events import (
    Allocation,
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceIssued,
    Money,
    PaymentReceived,
    make_envelope,
)
from dunning_runtime.results import Outcome
from dunning_runtime.scope import Scope
from invoice_svc import commands
from invoice_svc.models import InvoiceIn
from invoice_svc.storage import allocations

SOURCE = "/invoice-svc"


def received(payment_id: str, invoice_id: str, amount: str) -> PaymentReceived:
    return PaymentReceived(
        account_id="ACME-42",
        payment_id=payment_id,
        amount=Money(amount=amount, currency="EUR"),  # type: ignore[arg-type]
        received_at="2026-03-01T10:00:00Z",  # type: ignore[arg-type]
        method="bank_transfer",
        allocations=[
            Allocation(invoice_id=invoice_id, amount=Money(amount=amount, currency="EUR"))
        ],  # type: ignore[arg-type]
        unapplied=Money(amount="0.00", currency="EUR"),  # type: ignore[arg-type]
    )


async def test_payment_for_an_invoice_being_created_is_never_left_pending(
    client: httpx.AsyncClient,
) -> None:
    """The invoice's transaction has read "no pending allocations" and inserted the
    invoice, not yet committed, when a PaymentReceived for it arrives. Without the
    account lock the payment sees no invoice, stores a pending allocation and commits;
    the invoice then commits unpaid and the allocation stays pending forever."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    now = runtime.clock.now()
    item = InvoiceIn.model_validate(invoice())
    creating = runtime.database.transaction()
    session = await creating.__aenter__()
    try:
        scope = Scope("acme", now, runtime.outbox, SOURCE)
        [created] = await commands.create_invoices(session, scope, [item], grace_days=2)
        assert created.outcome is Outcome.CREATED

        async def payment() -> None:
            event = received("P1", "INV-1001", "1250.00")
            envelope = make_envelope(event, tenant="acme", source="/payment-svc", time=now)
            async with runtime.database.transaction() as other:
                await commands.apply_payments(other, runtime.outbox, [envelope])

        paying = asyncio.create_task(payment())
        # Give the payment every chance to run ahead of the invoice's commit.
        await asyncio.sleep(1.0)
    finally:
        await creating.__aexit__(None, None, None)
    await asyncio.wait_for(paying, 60)

    body = (await client.get("/v1/invoices/INV-1001", headers=ACME)).json()
    async with runtime.database.sessions() as check:
        rows = (await check.execute(allocations.select())).mappings().all()
    assert [(r["invoice_id"], r["applied"]) for r in rows] == [("INV-1001", True)]
    assert (body["status"], body["balance"], body["amount_paid"]) == ("paid", "0.00", "1250.00")


async def test_one_accounts_events_reach_the_bus_in_commit_order(
    client: httpx.AsyncClient, invoice_settings
) -> None:
    """Two writers change two invoices of one account at once, each holding its
    transaction open a random moment after writing. The bus must carry that account's
    events (one key) in the order the transactions committed: with outbox ids taken at
    insert and no account lock, a later insert can commit first and overtake."""
    from test_invoice_flow import published

    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    for invoice_id in ("INV-A", "INV-B"):
        response = await client.post(
            "/v1/invoices", json=invoice(invoice_id=invoice_id), headers=ACME
        )
        assert response.status_code == 201
    committed: list[tuple[str, int]] = []
    rounds = 12
    pace = random.Random(6)

    async def writer(invoice_id: str) -> None:
        for step in range(2 * rounds):
            async with runtime.database.transaction() as session:
                scope = Scope("acme", runtime.clock.now(), runtime.outbox, SOURCE)
                if step % 2 == 0:
                    await commands.dispute_invoice(session, scope, invoice_id, "check", None)
                else:
                    await commands.resolve_dispute(session, scope, invoice_id, "rejected")
                await asyncio.sleep(pace.uniform(0, 0.02))
            committed.append((invoice_id, step))

    await asyncio.wait_for(asyncio.gather(writer("INV-A"), writer("INV-B")), 120)
    events = await published(invoice_settings, 2 + 4 * rounds)
    changes = [e for e in events if not isinstance(e.data, InvoiceIssued)]
    assert {e.subject for e in changes} == {"ACME-42"}
    seen: dict[str, int] = {"INV-A": 0, "INV-B": 0}
    on_bus: list[tuple[str, int]] = []
    for event in changes:
        invoice_id = event.data.invoice_id  # type: ignore[attr-defined]
        expected = InvoiceDisputed if seen[invoice_id] % 2 == 0 else InvoiceDisputeResolved
        assert isinstance(event.data, expected)
        on_bus.append((invoice_id, seen[invoice_id]))
        seen[invoice_id] += 1
    assert on_bus == committed
