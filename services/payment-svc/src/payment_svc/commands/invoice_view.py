"""payment-svc's view of invoices, built from invoice events, and the credit it applies.

A partition's chunk of invoice events is applied at once: the accounts it touches are
locked, the chunk's invoices, the accounts' payments with money left and the holds for
the new invoices are loaded (one query each), the events are folded through the rules
in memory, in partition order, and the changes are written back with one statement
per kind. A new invoice takes the credit waiting for it: each use is a
``CreditApplied`` in the outbox, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import (
    Envelope,
    Event,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceSettled,
    InvoiceVoided,
)
from dunning_events.money import from_minor, to_minor
from dunning_runtime.db import utc
from dunning_runtime.locks import lock_accounts
from dunning_runtime.scope import Scope, envelope_of
from payment_svc import domain, events, storage
from payment_svc.domain import ZERO, Credit, CreditUse, InvoiceState
from payment_svc.storage import Changes, Row

InvoiceEvent = InvoiceIssued | InvoiceVoided | InvoiceDisputeResolved | InvoiceSettled
Key = tuple[str, str]
#: The scope payment-svc's commands act in for a tenant at an instant (``Runtime.scope``).
ScopeOf = Callable[[str, datetime], Scope]


@dataclass
class _Chunk:
    """The state a chunk works on, loaded once and changed in memory."""

    invoices: dict[Key, Row]
    payments: dict[Key, Row]  # (tenant, payment_id) -> row, oldest received first
    holds: dict[Key, list[Row]]  # (tenant, invoice_id) -> held applications
    new_invoices: list[Row] = field(default_factory=list)
    changed_invoices: set[Key] = field(default_factory=set)
    changed_payments: set[Key] = field(default_factory=set)
    new_apps: list[Row] = field(default_factory=list)
    changed_apps: list[Row] = field(default_factory=list)

    def changes(self) -> Changes:
        """What to write back: each changed row once, in key order."""
        unique = {id(a): a for a in self.changed_apps}
        return Changes(
            new_invoices=self.new_invoices,
            new_applications=self.new_apps,
            invoices=[self.invoices[k] for k in sorted(self.changed_invoices)],
            payments=[self.payments[k] for k in sorted(self.changed_payments)],
            applications=list(unique.values()),
        )


async def apply_invoice_events(
    session: AsyncSession, scope_of: ScopeOf, envelopes: Sequence[Envelope]
) -> None:
    """Fold a chunk of invoice events into the view, in order; new invoices take the
    credit waiting for them (``CreditApplied``, staged in the outbox as of the invoice
    event's time)."""
    chunk_events = [
        (e, e.data)
        for e in envelopes
        if isinstance(
            e.data, InvoiceIssued | InvoiceVoided | InvoiceDisputeResolved | InvoiceSettled
        )
    ]
    if not chunk_events:
        return
    chunk = await _load(session, chunk_events)
    staged: list[Envelope] = []
    scope: Scope | None = None
    for envelope, event in chunk_events:
        if isinstance(event, InvoiceIssued):
            scope = scope_of(envelope.tenant, envelope.time)
            staged += [envelope_of(scope, e) for e in _issued(chunk, envelope, event)]
        else:
            _changed(chunk, envelope, event)
    await storage.write(session, chunk.changes())
    if scope is not None and staged:  # every scope has the service's one outbox
        await scope.outbox.add(session, *staged)


async def _load(session: AsyncSession, chunk: list[tuple[Envelope, InvoiceEvent]]) -> _Chunk:
    accounts = {(e.tenant, d.account_id) for e, d in chunk}
    await lock_accounts(session, accounts)
    keys = {(e.tenant, d.invoice_id) for e, d in chunk}
    rows = await storage.account_invoices(session, (), keys)
    issued = any(isinstance(d, InvoiceIssued) for _, d in chunk)
    credit_rows = await storage.payments_with_credit(session, accounts) if issued else []
    new_keys = [(e.tenant, d.invoice_id) for e, d in chunk if isinstance(d, InvoiceIssued)]
    return _Chunk(
        invoices=rows,
        payments={(p["tenant"], p["payment_id"]): p for p in credit_rows},
        holds=await storage.holds_for(session, new_keys),
    )


def _issued(chunk: _Chunk, envelope: Envelope, event: InvoiceIssued) -> list[Event]:
    """A new invoice joins the view and takes the credit waiting for it."""
    key = (envelope.tenant, event.invoice_id)
    if key in chunk.invoices:
        return []  # the same invoice again (another event id): nothing new
    row = storage.invoice_row(envelope.tenant, event)
    chunk.invoices[key] = row
    chunk.new_invoices.append(row)
    return _apply_credit(chunk, row, envelope.time)


def _release(chunk: _Chunk, hold: Row) -> None:
    """A hold that cannot pay its invoice (other account or currency) becomes credit."""
    hold["reversed"] = True
    chunk.changed_apps.append(hold)
    payment = chunk.payments.get((hold["tenant"], hold["payment_id"]))
    if payment is not None:
        payment["held_minor"] -= hold["amount_minor"]
        payment["credit_minor"] += hold["amount_minor"]
        chunk.changed_payments.add((hold["tenant"], hold["payment_id"]))


def _holds(chunk: _Chunk, invoice: Row, state: InvoiceState) -> dict[str, Row]:
    """The holds waiting for ``invoice`` that can pay it, by payment id; the others
    are released into their payments' credit."""
    tenant = invoice["tenant"]
    holds = {}
    for hold in chunk.holds.pop((tenant, invoice["invoice_id"]), []):
        owner = chunk.payments.get((tenant, hold["payment_id"]))
        payer = None if owner is None else (owner["account_id"], owner["currency"])
        if domain.hold_can_pay(state, payer):
            holds[hold["payment_id"]] = hold
        else:
            _release(chunk, hold)
    return holds


def _credits(chunk: _Chunk, invoice: Row, holds: dict[str, Row]) -> list[Credit]:
    """The account's payments in the invoice's currency with money for it, oldest first."""
    tenant, currency = invoice["tenant"], invoice["currency"]
    return [
        Credit(
            payment_id=p["payment_id"],
            received_at=utc(p["received_at"]) or p["received_at"],
            held=_amount(holds[p["payment_id"]]["amount_minor"], currency)
            if p["payment_id"] in holds
            else ZERO,
            credit=_amount(p["credit_minor"], currency),
            named=frozenset(a["invoice_id"] for a in p["request"].get("allocations") or []),
        )
        for p in chunk.payments.values()
        if p["tenant"] == tenant
        and p["account_id"] == invoice["account_id"]
        and p["currency"] == currency
        and (p["credit_minor"] > 0 or p["payment_id"] in holds)
    ]


def _apply_credit(chunk: _Chunk, invoice: Row, now: datetime) -> list[Event]:
    """Apply the holds and credit waiting for a new ``invoice``; the events they cause."""
    state = storage.invoice_state(invoice)
    holds = _holds(chunk, invoice, state)
    out: list[Event] = []
    for use in domain.apply_credit(state, _credits(chunk, invoice, holds)):
        event = _use_credit(chunk, invoice, use, holds.get(use.payment_id), now)
        if event is not None:
            state = domain.applied_to(state, use.applied)
            out.append(event)
    currency = invoice["currency"]
    invoice["paid_minor"] = to_minor(state.paid, currency)
    invoice["discount_minor"] = to_minor(state.discounted, currency)
    return out


def _use_credit(
    chunk: _Chunk, invoice: Row, use: CreditUse, hold: Row | None, now: datetime
) -> Event | None:
    """One payment's credit (or hold) used on ``invoice``: the payment's and the hold's
    rows changed, the application recorded; its ``CreditApplied``, or None when nothing
    was left to pay (the hold became free credit)."""
    tenant, currency = invoice["tenant"], invoice["currency"]
    payment = chunk.payments[(tenant, use.payment_id)]
    if hold is not None:
        payment["held_minor"] -= hold["amount_minor"]
    payment["credit_minor"] = to_minor(use.credit_left, currency)
    unapplied = payment["credit_minor"] + payment["held_minor"]
    payment["status"] = domain.payment_status(
        _amount(payment["amount_minor"], currency), _amount(unapplied, currency), False
    ).value
    payment["updated_at"] = now
    chunk.changed_payments.add((tenant, use.payment_id))
    applied = use.applied
    if applied.amount <= ZERO:
        if hold is not None:
            hold["reversed"] = True  # nothing left to pay: the hold is credit now
            chunk.changed_apps.append(hold)
        return None
    if hold is not None:
        hold.update(
            kind="credit",
            amount_minor=to_minor(applied.amount, currency),
            discount_minor=to_minor(applied.discount, currency),
            applied_at=now,
        )
        chunk.changed_apps.append(hold)
    else:
        chunk.new_apps.append(storage.application_row(payment, applied, "credit", now))
    return events.credit_applied(payment, applied, _amount(unapplied, currency), now)


def _amount(minor: int, currency: str) -> Decimal:
    return from_minor(minor, currency)


def _changed(chunk: _Chunk, envelope: Envelope, event: InvoiceEvent) -> None:
    """Voids, upheld disputes and settlements change a known invoice; an unknown one
    is left alone (its InvoiceIssued comes first on the same partition)."""
    key = (envelope.tenant, event.invoice_id)
    row = chunk.invoices.get(key)
    if row is None:
        return
    if isinstance(event, InvoiceVoided):
        row["void"] = True
    elif isinstance(event, InvoiceDisputeResolved):
        credited = event.credited_amount
        granted = domain.credit_note(
            storage.invoice_state(row),
            event.resolution,
            credited.amount if credited is not None else None,
        )
        row["credited_minor"] += to_minor(granted, row["currency"])
    elif isinstance(event, InvoiceSettled):
        row["settled_seen_at"] = event.settled_at
    if "seq" in row:
        chunk.changed_invoices.add(key)
