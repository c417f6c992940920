"""Accept, read, list, void, dispute and resolve invoices (the ERP's requests).

Each writer runs inside the caller's transaction and takes the account lock first,
like every other writer of the service, so a change and the events it causes reach
the outbox in the order their transactions commit.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Event
from dunning_events.money import from_minor, to_minor
from dunning_runtime.db import Database
from dunning_runtime.locks import lock_account, lock_accounts
from dunning_runtime.pagination import Page, keyset_page
from dunning_runtime.results import ItemResult, created, invalid, replay_or_conflict
from dunning_runtime.scope import Scope, emit
from dunning_runtime.telemetry import current_traceparent
from invoice_svc import domain, events, storage
from invoice_svc.domain import Balance, InvoiceNotFound, InvoiceStatus
from invoice_svc.models import InvoiceIn
from invoice_svc.storage import Row, balance_of

# -- reading -----------------------------------------------------------------


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


async def get_invoice(database: Database, tenant: str, invoice_id: str) -> RowMapping:
    """One invoice of the tenant as stored; ``InvoiceNotFound`` otherwise."""
    async with database.sessions() as session:
        return await load(session, tenant, invoice_id)


async def list_invoices(
    database: Database,
    tenant: str,
    *,
    account_id: str | None = None,
    status: str | None = None,
    due_before: date | None = None,
    due_after: date | None = None,
    after: int | None = None,
    limit: int,
) -> Page[RowMapping]:
    """A page of the tenant's invoices in the order they were accepted, after sequence
    id ``after``, and the cursor of the next page."""
    async with database.sessions() as session:
        rows = await storage.list_invoices(
            session,
            tenant,
            account_id=account_id,
            status=status,
            due_before=due_before,
            due_after=due_after,
            after=after,
            limit=limit,
        )
    return keyset_page(rows, limit, lambda row: int(row["seq"]))


# -- creating ----------------------------------------------------------------


#: What posting one invoice came to: created, replayed, conflict or invalid, with the
#: invoice's row when it was accepted (``dunning_runtime.results``).
Created = ItemResult[Row]


def _new_row(
    item: InvoiceIn,
    body: dict[str, Any],
    scope: Scope,
    grace_days: int,
    paid_minor: int,
    traceparent: str | None,
) -> dict[str, Any]:
    """The row of an accepted invoice, with the standing the rules give it."""
    paid = Balance(amount_due=item.amount_due, amount_paid=from_minor(paid_minor, item.currency))
    return storage.new_row(
        item,
        body,
        tenant=scope.tenant,
        now=scope.now,
        overdue_at=domain.overdue_at(item.due_date, item.timezone, grace_days),
        paid_minor=paid_minor,
        standing=domain.standing_of_new(paid, scope.now),
        traceparent=traceparent,
    )


async def create_invoices(
    session: AsyncSession, scope: Scope, items: list[InvoiceIn], grace_days: int
) -> list[Created]:
    """Accept invoices in one transaction, each on its own: an id seen before is a replay
    or a conflict; an item whose event cannot be built is invalid and is not stored.

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
    traceparent = current_traceparent()
    for item in items:
        body = item.model_dump(mode="json")
        if item.invoice_id in accepted:
            row = accepted[item.invoice_id]
            results.append(replay_or_conflict(row["request"], body, row))
            continue
        try:
            issued = events.issued(item)
            paid = sum(pending.get(item.invoice_id, []))
            row = _new_row(item, body, scope, grace_days, paid, traceparent)
        except ValueError as exc:  # ValidationError too: the input checks missed something
            results.append(invalid(exc))
            continue
        accepted[item.invoice_id] = row
        new_rows.append(row)
        staged.append(issued)
        if row["status"] == InvoiceStatus.PAID:
            staged.append(events.settled(row, scope.now))
        results.append(created(row))
    paid_from_pending = {r["invoice_id"] for r in new_rows if r["invoice_id"] in pending}
    await storage.insert_invoices(session, scope.tenant, new_rows, paid_from_pending)
    await emit(session, scope, *staged)
    return results


# -- changing ----------------------------------------------------------------


def rewritten(row: Row, now: datetime, after: Balance, **changes: Any) -> dict[str, Any]:
    """The columns to write for a new balance ``after`` (and other ``changes``), with the
    standing the rules give it (status, chase flag, ``settled_at``)."""
    standing = domain.standing_after(
        storage.standing_of(row),
        after,
        now,
        disputed=changes.get("disputed", row["disputed"]),
        notified=changes.get("overdue_notified_at", row["overdue_notified_at"]) is not None,
    )
    return storage.changed_values(row, now, after, standing, **changes)


async def _store(
    session: AsyncSession, scope: Scope, row: Row, after: Balance, **changes: Any
) -> dict[str, Any]:
    """Write ``after`` (and ``changes``) back; the row as it now is."""
    values = rewritten(row, scope.now, after, **changes)
    return await storage.store(session, row, values)


async def void_invoice(session: AsyncSession, scope: Scope, invoice_id: str, reason: str) -> Row:
    """Void an unpaid invoice; voiding it again changes nothing."""
    row = await load(session, scope.tenant, invoice_id, lock=True)
    before = balance_of(row)
    after = domain.void(before)
    if after == before:
        return row
    stored = await _store(session, scope, row, after, void_reason=reason, voided_at=scope.now)
    await emit(session, scope, events.voided(row, reason, before.balance))
    return stored


async def dispute_invoice(
    session: AsyncSession, scope: Scope, invoice_id: str, reason: str, amount: Decimal | None
) -> Row:
    """Open a dispute over ``amount`` (default: the whole balance); chasing it pauses."""
    row = await load(session, scope.tenant, invoice_id, lock=True)
    currency = row["currency"]
    balance = balance_of(row)
    covered = domain.open_dispute(balance, currency, disputed=row["disputed"], amount=amount)
    disputed_minor = to_minor(covered, currency)
    stored = await _store(
        session,
        scope,
        row,
        balance,
        disputed=True,
        dispute_reason=reason,
        disputed_minor=disputed_minor,
        disputed_at=scope.now,
    )
    await emit(session, scope, events.disputed(row, reason, from_minor(disputed_minor, currency)))
    return stored


async def resolve_dispute(
    session: AsyncSession, scope: Scope, invoice_id: str, resolution: str
) -> Row:
    """Close the dispute: ``upheld`` credits the disputed amount, ``rejected`` chases again."""
    row = await load(session, scope.tenant, invoice_id, lock=True)
    before = balance_of(row)
    after = domain.resolve_dispute(
        before,
        disputed=row["disputed"],
        disputed_amount=from_minor(row["disputed_minor"] or 0, row["currency"]),
        resolution=resolution,
    )
    stored = await _store(
        session,
        scope,
        row,
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
    return stored
