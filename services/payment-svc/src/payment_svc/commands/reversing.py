"""Reversing a payment (bounced, charged back) in the caller's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events.money import from_minor
from dunning_runtime.locks import lock_accounts
from dunning_runtime.scope import Scope, emit
from payment_svc import domain, events, storage
from payment_svc.domain import Applied, PaymentNotFound
from payment_svc.storage import Changes, StoredPayment


async def reverse_payment(
    session: AsyncSession, scope: Scope, payment_id: str, reason: str
) -> StoredPayment:
    """Reverse a payment (bounced, charged back): every invoice it paid, by allocation or
    by credit, owes that money and the discount taken with it again; its credit is
    gone. A second reversal is ``AlreadyReversed``; an unknown payment ``PaymentNotFound``."""
    tenant, now = scope.tenant, scope.now
    found = await storage.payments_by_id(session, tenant, [payment_id])
    if payment_id not in found:
        raise PaymentNotFound(f"There is no payment {payment_id!r}.")
    await lock_accounts(session, [(tenant, found[payment_id]["account_id"])])
    row = (await storage.payments_by_id(session, tenant, [payment_id]))[payment_id]
    domain.check_reversible(row["status"] == domain.PaymentStatus.REVERSED, payment_id)
    apps = await storage.applications_of(session, [(tenant, payment_id)])
    live = [a for a in apps if not a["reversed"]]
    rows = await storage.account_invoices(
        session, (), {(tenant, a["invoice_id"]) for a in live if a["kind"] != "held"}
    )
    currency = row["currency"]
    undone: list[Applied] = []
    for app in live:
        app["reversed"] = True
        if app["kind"] == "held":
            continue
        applied = Applied(
            app["invoice_id"],
            from_minor(app["amount_minor"], currency),
            from_minor(app["discount_minor"], currency),
        )
        undone.append(applied)
        key = (tenant, app["invoice_id"])
        if key in rows:
            storage.store_state(rows[key], domain.undone(storage.invoice_state(rows[key]), applied))
    credit_voided = from_minor(row["credit_minor"] + row["held_minor"], currency)
    row.update(
        credit_minor=0,
        held_minor=0,
        status=domain.PaymentStatus.REVERSED.value,
        reversed_at=now,
        reversal_reason=reason,
        updated_at=now,
    )
    changes = Changes(payments=[row], applications=live, invoices=list(rows.values()))
    await storage.write(session, changes)
    await emit(session, scope, events.reversed_(row, undone, credit_voided, reason, now))
    return StoredPayment(row, apps)
