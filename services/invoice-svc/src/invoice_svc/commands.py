"""invoice-svc's HTTP use cases: accept, void, dispute and resolve invoices.

Each runs inside the caller's transaction: it takes the account lock, loads the
rows, asks ``domain`` what the change is, stores it and stages the events in the
outbox, so a change and its events commit together. Rule errors are
``domain.InvoiceRuleError``s; the API maps them to problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Event
from dunning_events.money import from_minor, to_minor
from dunning_runtime.idempotency import changed_fields, conflict_problem
from dunning_runtime.locks import lock_account, lock_accounts
from dunning_runtime.outbox import Outbox
from dunning_runtime.problems import Problem, validation_errors
from dunning_runtime.scope import Scope, emit
from invoice_svc import domain, events, storage
from invoice_svc.domain import InvoiceNotFound, InvoiceStatus
from invoice_svc.models import InvoiceIn, InvoiceOut
from invoice_svc.views import balance_of, invoice_view

SOURCE = "/invoice-svc"


def scope_for(tenant: str, now: datetime, outbox: Outbox) -> Scope:
    """The scope of invoice-svc's commands: its events come from ``/invoice-svc``."""
    return Scope(tenant, now, outbox, SOURCE)


async def load(
    session: AsyncSession, tenant: str, invoice_id: str, *, lock: bool = False
) -> RowMapping:
    """An invoice of the tenant; ``InvoiceNotFound`` otherwise (another tenant's too).

    With ``lock``, the invoice's account is locked first, then the row.
    """
    if lock:
        accounts = await storage.account_of_invoices(session, tenant, [invoice_id])
        if invoice_id in accounts:
            await lock_account(session, tenant, accounts[invoice_id])
    row = await storage.get_invoice(session, tenant, invoice_id, for_update=lock)
    if row is None:
        raise InvoiceNotFound(f"There is no invoice {invoice_id!r}.")
    return row


# -- creating ----------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """The outcome of posting one invoice."""

    status: int  # 201 new, 200 the same invoice again, 409 same id other content, 422 invalid
    invoice: InvoiceOut | None = None
    problem: Problem | None = None


def _invalid(exc: ValueError) -> Problem:
    errors = (
        validation_errors(exc.errors())
        if isinstance(exc, ValidationError)
        else [{"field": "body", "message": str(exc), "type": "value_error"}]
    )
    return Problem(422, "The invoice is not valid.", type_="validation-error", errors=errors)


async def create_invoices(
    session: AsyncSession, scope: Scope, items: list[InvoiceIn], grace_days: int
) -> list[Created]:
    """Accept invoices in one transaction, each on its own: an id seen before is a replay
    (200) or a 409; an item whose event cannot be built is a 422 and is not stored.

    The accounts are locked (in one order) before anything is read, so a payment for
    one of these invoices either committed before (its pending allocation is applied
    here) or waits and finds the invoice.
    """
    await lock_accounts(session, [(scope.tenant, i.account_id) for i in items])
    ids = [i.invoice_id for i in items]
    existing = await storage.get_invoices(session, scope.tenant, ids)
    accepted: dict[str, dict[str, Any]] = {k: dict(v) for k, v in existing.items()}
    pending = await storage.pending_allocations(
        session, scope.tenant, [i for i in ids if i not in existing]
    )
    results: list[Created] = []
    new_rows: list[dict[str, Any]] = []
    staged: list[Event] = []
    for item in items:
        body = item.model_dump(mode="json")
        if item.invoice_id in accepted:
            row = accepted[item.invoice_id]
            fields = changed_fields(row["request"], body)
            if fields:
                results.append(
                    Created(409, problem=conflict_problem("invoice", item.invoice_id, fields))
                )
            else:
                results.append(Created(200, invoice_view(row, scope.now)))
            continue
        try:
            issued = events.issued(item)
            row = storage.new_row(
                item,
                body,
                tenant=scope.tenant,
                now=scope.now,
                grace_days=grace_days,
                paid_minor=sum(pending.get(item.invoice_id, [])),
            )
            view = invoice_view(row, scope.now)
        except ValueError as exc:  # ValidationError too: the input checks missed something
            results.append(Created(422, problem=_invalid(exc)))
            continue
        accepted[item.invoice_id] = row
        new_rows.append(row)
        staged.append(issued)
        if row["status"] == InvoiceStatus.PAID:
            staged.append(events.settled(row, scope.now))
        results.append(Created(201, view))
    paid_from_pending = {r["invoice_id"] for r in new_rows if r["invoice_id"] in pending}
    await storage.insert_invoices(session, scope.tenant, new_rows, paid_from_pending)
    await emit(session, scope, *staged)
    return results


# -- changing ----------------------------------------------------------------


async def void_invoice(
    session: AsyncSession, scope: Scope, invoice_id: str, reason: str
) -> InvoiceOut:
    """Void an unpaid invoice; voiding it again changes nothing."""
    row = await load(session, scope.tenant, invoice_id, lock=True)
    before = balance_of(row)
    after = domain.void(before)
    if after == before:
        return invoice_view(row, scope.now)
    stored = await storage.store(
        session, row, scope.now, after, void_reason=reason, voided_at=scope.now
    )
    await emit(session, scope, events.voided(row, reason, before.balance))
    return invoice_view(stored, scope.now)


async def dispute_invoice(
    session: AsyncSession, scope: Scope, invoice_id: str, reason: str, amount: Decimal | None
) -> InvoiceOut:
    """Open a dispute over ``amount`` (default: the whole balance); chasing it pauses."""
    row = await load(session, scope.tenant, invoice_id, lock=True)
    currency = row["currency"]
    balance = balance_of(row)
    covered = domain.open_dispute(balance, currency, disputed=row["disputed"], amount=amount)
    disputed_minor = to_minor(covered, currency)
    stored = await storage.store(
        session,
        row,
        scope.now,
        balance,
        disputed=True,
        dispute_reason=reason,
        disputed_minor=disputed_minor,
        disputed_at=scope.now,
    )
    await emit(session, scope, events.disputed(row, reason, from_minor(disputed_minor, currency)))
    return invoice_view(stored, scope.now)


async def resolve_dispute(
    session: AsyncSession, scope: Scope, invoice_id: str, resolution: str
) -> InvoiceOut:
    """Close the dispute: ``upheld`` credits the disputed amount, ``rejected`` chases again."""
    row = await load(session, scope.tenant, invoice_id, lock=True)
    before = balance_of(row)
    after = domain.resolve_dispute(
        before,
        disputed=row["disputed"],
        disputed_amount=from_minor(row["disputed_minor"] or 0, row["currency"]),
        resolution=resolution,
    )
    stored = await storage.store(
        session,
        row,
        scope.now,
        after,
        disputed=False,
        dispute_reason=None,
        disputed_minor=None,
        disputed_at=None,
    )
    staged: list[Event] = [events.dispute_resolved(row, resolution, before, after)]
    if domain.settles(before, after):
        staged.append(events.settled(stored, scope.now))
    await emit(session, scope, *staged)
    return invoice_view(stored, scope.now)
