"""payment-svc's view of invoices, built from invoice events, and the credit it applies.

The invoices subscription takes a partition's chunk at once (a batch handler): it
locks every account the chunk touches, loads the chunk's invoices, the accounts'
payments with money left and the holds for the new invoices (one query each), folds
the events through the rules in memory, in partition order, and writes the changes
back with one statement per kind. A new invoice takes the credit waiting for it:
each use is a ``CreditApplied`` in the outbox, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import (
    Envelope,
    Event,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceSettled,
    InvoiceVoided,
    topics,
)
from dunning_events.money import from_minor, to_minor
from dunning_runtime.app import Runtime
from dunning_runtime.consumer import Subscription
from dunning_runtime.db import utc
from dunning_runtime.locks import lock_accounts
from dunning_runtime.outbox import Outbox
from dunning_runtime.scope import envelope_of
from payment_svc import domain, events, storage
from payment_svc.commands import scope_for
from payment_svc.domain import ZERO, Credit
from payment_svc.storage import Row, applications, invoices

InvoiceEvent = InvoiceIssued | InvoiceVoided | InvoiceDisputeResolved | InvoiceSettled
Key = tuple[str, str]


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


async def _load(session: AsyncSession, chunk: list[tuple[Envelope, InvoiceEvent]]) -> _Chunk:
    accounts = {(e.tenant, d.account_id) for e, d in chunk}
    await lock_accounts(session, accounts)
    keys = {(e.tenant, d.invoice_id) for e, d in chunk}
    rows = await storage.account_invoices(session, (), keys)
    issued = any(isinstance(d, InvoiceIssued) for _, d in chunk)
    credit_rows = await storage.payments_with_credit(session, accounts) if issued else []
    holds: dict[Key, list[Row]] = {}
    new_keys = sorted((e.tenant, d.invoice_id) for e, d in chunk if isinstance(d, InvoiceIssued))
    if new_keys:
        held = await session.execute(
            select(applications)
            .where(
                tuple_(applications.c.tenant, applications.c.invoice_id).in_(new_keys),
                applications.c.kind == "held",
                applications.c.reversed.is_(False),
            )
            .order_by(applications.c.seq)
        )
        for app in held.mappings():
            holds.setdefault((app["tenant"], app["invoice_id"]), []).append(dict(app))
    return _Chunk(
        invoices=rows,
        payments={(p["tenant"], p["payment_id"]): p for p in credit_rows},
        holds=holds,
    )


def _issued(chunk: _Chunk, envelope: Envelope, event: InvoiceIssued) -> list[Event]:
    """A new invoice joins the view and takes the credit waiting for it."""
    tenant = envelope.tenant
    key = (tenant, event.invoice_id)
    if key in chunk.invoices:
        return []  # the same invoice again (another event id): nothing new
    currency = event.amount_due.currency
    terms = event.terms.early_payment_discount
    row: Row = {
        "tenant": tenant,
        "invoice_id": event.invoice_id,
        "account_id": event.account_id,
        "currency": currency,
        "amount_due_minor": to_minor(event.amount_due.amount, currency),
        "paid_minor": 0,
        "discount_minor": 0,
        "credited_minor": 0,
        "void": False,
        "issue_date": event.issue_date,
        "due_date": event.due_date,
        "timezone": event.timezone,
        "discount_percent": str(terms.percent) if terms else None,
        "discount_days": terms.within_days if terms else None,
        "settled_seen_at": None,
    }
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


def _apply_credit(chunk: _Chunk, invoice: Row, now: datetime) -> list[Event]:
    tenant, currency = invoice["tenant"], invoice["currency"]
    holds = {h["payment_id"]: h for h in chunk.holds.pop((tenant, invoice["invoice_id"]), [])}
    for payment_id, waiting in list(holds.items()):
        owner = chunk.payments.get((tenant, payment_id))
        if (
            owner is None
            or owner["currency"] != currency
            or owner["account_id"] != invoice["account_id"]
        ):
            _release(chunk, waiting)
            del holds[payment_id]
    sources = [
        p
        for p in chunk.payments.values()
        if p["tenant"] == tenant
        and p["account_id"] == invoice["account_id"]
        and p["currency"] == currency
        and (p["credit_minor"] > 0 or p["payment_id"] in holds)
    ]
    credits = [
        Credit(
            payment_id=p["payment_id"],
            received_at=utc(p["received_at"]) or p["received_at"],
            held=_amount(holds[p["payment_id"]]["amount_minor"], currency)
            if p["payment_id"] in holds
            else ZERO,
            credit=_amount(p["credit_minor"], currency),
            named=frozenset(a["invoice_id"] for a in p["request"].get("allocations") or []),
        )
        for p in sources
    ]
    state = storage.invoice_state(invoice)
    out: list[Event] = []
    for use in domain.apply_credit(state, credits):
        payment = chunk.payments[(tenant, use.payment_id)]
        hold = holds.get(use.payment_id)
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
            continue
        state = domain.applied_to(state, applied)
        if hold is not None:
            hold.update(
                kind="credit",
                amount_minor=to_minor(applied.amount, currency),
                discount_minor=to_minor(applied.discount, currency),
                applied_at=now,
            )
            chunk.changed_apps.append(hold)
        else:
            chunk.new_apps.append(
                {
                    "tenant": tenant,
                    "payment_id": use.payment_id,
                    "invoice_id": invoice["invoice_id"],
                    "account_id": invoice["account_id"],
                    "kind": "credit",
                    "amount_minor": to_minor(applied.amount, currency),
                    "discount_minor": to_minor(applied.discount, currency),
                    "reversed": False,
                    "applied_at": now,
                }
            )
        out.append(events.credit_applied(payment, applied, _amount(unapplied, currency), now))
    invoice["paid_minor"] = to_minor(state.paid, currency)
    invoice["discount_minor"] = to_minor(state.discounted, currency)
    return out


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
        if event.resolution == "upheld" and credited is not None and credited.amount > 0:
            state = storage.invoice_state(row)
            granted = min(credited.amount, state.balance)
            row["credited_minor"] += to_minor(granted, row["currency"])
    elif isinstance(event, InvoiceSettled):
        row["settled_seen_at"] = event.settled_at
    if "seq" in row:
        chunk.changed_invoices.add(key)


async def _write_back(session: AsyncSession, chunk: _Chunk) -> None:
    await storage.insert_rows(session, invoices, chunk.new_invoices)
    await storage.update_rows(
        session,
        invoices,
        [chunk.invoices[k] for k in sorted(chunk.changed_invoices)],
        storage.INVOICE_COLUMNS,
    )
    await storage.update_rows(
        session,
        storage.payments,
        [chunk.payments[k] for k in sorted(chunk.changed_payments)],
        storage.PAYMENT_COLUMNS,
    )
    await storage.insert_rows(session, applications, chunk.new_apps)
    unique = {id(a): a for a in chunk.changed_apps}
    await storage.update_rows(
        session, applications, list(unique.values()), storage.APPLICATION_COLUMNS
    )


async def apply_invoice_events(
    session: AsyncSession, outbox: Outbox, envelopes: Sequence[Envelope]
) -> None:
    """Fold a chunk of invoice events into the view, in order; new invoices take the
    credit waiting for them (``CreditApplied``)."""
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
    staged = []
    for envelope, event in chunk_events:
        if isinstance(event, InvoiceIssued):
            scope = scope_for(envelope.tenant, envelope.time, outbox)
            staged += [envelope_of(scope, e) for e in _issued(chunk, envelope, event)]
        else:
            _changed(chunk, envelope, event)
    await _write_back(session, chunk)
    if staged:
        await outbox.add(session, *staged)


def invoice_view(runtime: Runtime) -> Subscription:
    """Keep payment-svc's view of invoices from the invoices topic."""

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        await apply_invoice_events(session, runtime.outbox, envelopes)

    return Subscription("payment-svc", (topics.INVOICES,), batch_handler=handle)
