"""Receiving payments: each on its own and in order, in the caller's transaction.

The accounts are locked before anything is read, so two payments for one account never
allocate against the same balance; the rows are loaded once (one query each), every
payment is applied through ``domain.allocate`` in memory, each seeing what the ones
before it took, and the changes are written back with one statement per kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Event
from dunning_runtime.locks import lock_accounts
from dunning_runtime.results import ItemResult, created, invalid, replay_or_conflict
from dunning_runtime.scope import Scope, emit
from payment_svc import domain, events, storage
from payment_svc.domain import Applied, InvoiceState, PaymentRuleError, Posted
from payment_svc.storage import Changes, InvoiceKey, Row, StoredPayment

#: What became of one posted payment: created, replayed, conflict or invalid.
Received = ItemResult[StoredPayment]


@dataclass
class _Batch:
    """What one call works on: loaded once, changed in memory, written back at the end."""

    tenant: str
    accepted: dict[str, Row]  # payment_id -> row: stored before, or accepted by this call
    known_apps: dict[str, list[Row]]  # applications of the payments stored before
    rows: dict[InvoiceKey, Row]  # the invoices the payments may pay
    states: dict[InvoiceKey, InvoiceState]
    by_account: dict[str, dict[str, InvoiceState]]
    #: Invoices named by id, whatever their account: an allocation to another
    #: account's invoice is refused by the rules, not held.
    named: dict[str, InvoiceState]
    changes: Changes = field(default_factory=Changes)
    changed: set[InvoiceKey] = field(default_factory=set)
    staged: list[Event] = field(default_factory=list)


async def receive_payments(
    session: AsyncSession,
    scope: Scope,
    items: Sequence[Posted],
    source: str = "api",
    *,
    any_content_replays: bool = False,
) -> list[Received]:
    """Accept payments in one transaction, each on its own and in order: an id seen
    before is a replay, or a conflict naming the fields that differ (with
    ``any_content_replays``, a processor's notice, a replay listing them); a payment the
    rules refuse is not stored."""
    batch = await _load(session, scope.tenant, items)
    results: list[Received] = []
    for item in items:
        if item.payment.payment_id in batch.accepted:
            results.append(_again(batch, item, any_content_replays))
        else:
            results.append(_accept(batch, item, source, scope.now))
    batch.changes.invoices = [batch.rows[k] for k in sorted(batch.changed)]
    await storage.write(session, batch.changes)
    await emit(session, scope, *batch.staged)
    return results


async def _load(session: AsyncSession, tenant: str, items: Sequence[Posted]) -> _Batch:
    """Lock the accounts, then load the payments already stored and the invoices the
    new ones may pay (open ones of their accounts, and every one named)."""
    await lock_accounts(session, [(tenant, i.payment.account_id) for i in items])
    ids = [i.payment.payment_id for i in items]
    existing = await storage.payments_by_id(session, tenant, ids)
    known = await storage.applications_of(session, [(tenant, p) for p in existing])
    fresh = [i.payment for i in items if i.payment.payment_id not in existing]
    rows = await storage.account_invoices(
        session,
        {(tenant, p.account_id) for p in fresh},
        {(tenant, a.invoice_id) for p in fresh for a in p.allocations or ()},
    )
    states = {key: storage.invoice_state(row) for key, row in rows.items()}
    by_account: dict[str, dict[str, InvoiceState]] = {}
    for (_, invoice_id), state in states.items():
        by_account.setdefault(state.account_id, {})[invoice_id] = state
    return _Batch(
        tenant=tenant,
        accepted=dict(existing),
        known_apps=storage.by_payment(known),
        rows=rows,
        states=states,
        by_account=by_account,
        named={k[1]: s for k, s in states.items()},
    )


def _again(batch: _Batch, item: Posted, any_content_replays: bool) -> Received:
    """A payment id accepted before (or earlier in this call): a replay or a conflict."""
    payment_id = item.payment.payment_id
    row = batch.accepted[payment_id]
    mine = batch.known_apps.get(payment_id) or [
        a for a in batch.changes.new_applications if a["payment_id"] == payment_id
    ]
    return replay_or_conflict(
        row["request"],
        item.request,
        StoredPayment(row, mine),
        any_content_replays=any_content_replays,
    )


def _accept(batch: _Batch, item: Posted, source: str, now: datetime) -> Received:
    """A new payment: applied by the rules to the invoices it may pay, stored, its
    ``PaymentReceived`` staged; or refused, leaving everything as it was."""
    payment = item.payment
    try:
        plan = domain.allocate(_payable(batch, item), payment)
    except PaymentRuleError as error:
        return invalid(error)
    status = domain.payment_status(payment.amount, plan.unapplied, False).value
    row = storage.payment_row(batch.tenant, item, plan, status, source, now)
    try:
        event = events.received(row, plan)
    except ValueError as error:  # ValidationError too: the input checks missed something
        return invalid(error)
    apps = [storage.application_row(row, a, "allocation", now) for a in plan.applied]
    apps += [
        storage.application_row(row, Applied(h.invoice_id, h.amount), "held", now)
        for h in plan.held
    ]
    for applied in plan.applied:
        key = (batch.tenant, applied.invoice_id)
        state = domain.applied_to(batch.states[key], applied)
        batch.states[key] = state
        batch.by_account.setdefault(state.account_id, {})[applied.invoice_id] = state
        storage.store_state(batch.rows[key], state)
        batch.changed.add(key)
    batch.accepted[payment.payment_id] = row
    batch.changes.new_payments.append(row)
    batch.changes.new_applications += apps
    batch.staged.append(event)
    return created(StoredPayment(row, apps))


def _payable(batch: _Batch, item: Posted) -> dict[str, InvoiceState]:
    """The invoices the rules see for ``item``: its account's open ones and the ones it
    names (another account's among them is refused by the rules)."""
    invoices = dict(batch.by_account.get(item.payment.account_id, {}))
    for allocation in item.payment.allocations or ():
        other = batch.named.get(allocation.invoice_id)
        if other is not None and allocation.invoice_id not in invoices:
            invoices[allocation.invoice_id] = other
    return invoices
