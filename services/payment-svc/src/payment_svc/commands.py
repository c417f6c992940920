"""payment-svc's use cases: receive payments, reverse them, record processor webhooks.

Each runs inside the caller's transaction: it takes the account locks, loads the
rows, asks ``domain`` where the money goes, stores the result and stages the events
in the outbox, so a change and its events commit together. Rule errors are
``domain.PaymentRuleError``s; the API maps them to problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Event
from dunning_events.money import from_minor, to_minor
from dunning_runtime.idempotency import changed_fields, conflict_problem
from dunning_runtime.locks import lock_accounts
from dunning_runtime.outbox import Outbox
from dunning_runtime.problems import Problem, field_problem, validation_errors
from dunning_runtime.scope import Scope, emit
from payment_svc import domain, events, storage
from payment_svc.domain import ZERO, Applied, PaymentNotFound, PaymentRuleError, Requested
from payment_svc.models import PaymentIn, PaymentOut, WebhookIn, WebhookOut, WebhookPayment
from payment_svc.models import WebhookReversal as WebhookReversalIn
from payment_svc.storage import Row, applications, payments, webhook_events
from payment_svc.views import by_payment, payment_view

SOURCE = "/payment-svc"


def scope_for(tenant: str, now: datetime, outbox: Outbox) -> Scope:
    """The scope of payment-svc's commands: its events come from ``/payment-svc``."""
    return Scope(tenant, now, outbox, SOURCE)


# -- receiving -----------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """The outcome of posting one payment."""

    status: int  # 201 new, 200 the same payment again, 409 same id other content, 422 invalid
    payment: PaymentOut | None = None
    problem: Problem | None = None
    differences: tuple[str, ...] = ()


def rule_problem(error: PaymentRuleError, prefix: str = "body") -> Problem:
    """A 422 naming the field the rule refused."""
    return field_problem(str(error), f"{prefix}.{error.field}" if error.field else prefix)


def _requested(item: PaymentIn | WebhookPayment) -> tuple[Requested, ...] | None:
    if item.allocations is None:
        return None
    return tuple(Requested(a.invoice_id, a.amount) for a in item.allocations)


async def receive_payments(
    session: AsyncSession,
    scope: Scope,
    items: Sequence[PaymentIn | WebhookPayment],
    source: str = "api",
    *,
    any_content_replays: bool = False,
) -> list[Received]:
    """Accept payments in one transaction, each on its own and in order: an id seen
    before is a replay (200) or a 409 naming the fields that differ (with
    ``any_content_replays``, a webhook's notice, a 200 listing them); an item the rules
    refuse is a 422 and is not stored.

    The accounts are locked before anything is read, so two payments for one account
    never allocate against the same balance.
    """
    tenant, now = scope.tenant, scope.now
    await lock_accounts(session, [(tenant, i.account_id) for i in items])
    existing = await storage.payments_by_id(session, tenant, [i.payment_id for i in items])
    known_apps = by_payment(await storage.applications_of(session, [(tenant, p) for p in existing]))
    fresh = [i for i in items if i.payment_id not in existing]
    rows = await storage.account_invoices(
        session,
        {(tenant, i.account_id) for i in fresh},
        {(tenant, a.invoice_id) for i in fresh for a in i.allocations or []},
    )
    states = {key: storage.invoice_state(row) for key, row in rows.items()}
    by_account: dict[str, dict[str, domain.InvoiceState]] = {}
    for (_, invoice_id), state in states.items():
        by_account.setdefault(state.account_id, {})[invoice_id] = state
    named_elsewhere = {k[1]: s for k, s in states.items()}

    results: list[Received] = []
    accepted: dict[str, Row] = dict(existing)
    new_payments: list[Row] = []
    new_apps: list[Row] = []
    changed: set[tuple[str, str]] = set()
    staged: list[Event] = []
    for item in items:
        body = item.model_dump(mode="json")
        if item.payment_id in accepted:
            row = accepted[item.payment_id]
            fields = changed_fields(row["request"], body)
            mine = known_apps.get(item.payment_id) or [
                a for a in new_apps if a["payment_id"] == item.payment_id
            ]
            view = payment_view(row, mine)
            if fields and not any_content_replays:
                results.append(
                    Received(409, problem=conflict_problem("payment", item.payment_id, fields))
                )
            else:
                results.append(Received(200, view, differences=tuple(fields)))
            continue
        invoices = dict(by_account.get(item.account_id, {}))
        for allocation in item.allocations or []:
            other = named_elsewhere.get(allocation.invoice_id)
            if other is not None and allocation.invoice_id not in invoices:
                invoices[allocation.invoice_id] = other  # another account's: refused below
        payment = domain.PaymentIn(
            payment_id=item.payment_id,
            currency=item.currency,
            amount=item.amount,
            received_at=item.received_at,
            allocations=_requested(item),
            account_id=item.account_id,
        )
        try:
            plan = domain.allocate(invoices, payment)
        except PaymentRuleError as error:
            results.append(Received(422, problem=rule_problem(error)))
            continue
        currency = item.currency
        held = sum((h.amount for h in plan.held), ZERO)
        row = {
            "tenant": tenant,
            "payment_id": item.payment_id,
            "account_id": item.account_id,
            "currency": currency,
            "amount_minor": to_minor(item.amount, currency),
            # Stored in UTC: SQLite keeps no offset, and every stored instant is UTC.
            "received_at": item.received_at.astimezone(UTC),
            "method": item.method,
            "reference": item.reference,
            "metadata": dict(item.metadata),
            "request": body,
            "source": source,
            "credit_minor": to_minor(plan.credit, currency),
            "held_minor": to_minor(held, currency),
            "status": domain.payment_status(item.amount, plan.unapplied, False).value,
            "reversed_at": None,
            "reversal_reason": None,
            "created_at": now,
            "updated_at": now,
        }
        try:
            event = events.received(row, plan)
        except ValueError as exc:  # ValidationError too: the input checks missed something
            errors = (
                validation_errors(exc.errors())
                if isinstance(exc, ValidationError)
                else [{"field": "body", "message": str(exc), "type": "value_error"}]
            )
            problem = Problem(
                422, "The payment is not valid.", type_="validation-error", errors=errors
            )
            results.append(Received(422, problem=problem))
            continue
        apps = [_application(row, a, "allocation", now) for a in plan.applied]
        apps += [_application(row, Applied(h.invoice_id, h.amount), "held", now) for h in plan.held]
        for applied in plan.applied:
            key = (tenant, applied.invoice_id)
            state = domain.applied_to(states[key], applied)
            states[key] = state
            by_account.setdefault(state.account_id, {})[applied.invoice_id] = state
            _store_state(rows[key], state)
            changed.add(key)
        accepted[item.payment_id] = row
        new_payments.append(row)
        new_apps += apps
        staged.append(event)
        results.append(Received(201, payment_view(row, apps)))
    await storage.insert_rows(session, payments, new_payments)
    await storage.insert_rows(session, applications, new_apps)
    await storage.update_rows(
        session, storage.invoices, [rows[k] for k in sorted(changed)], storage.INVOICE_COLUMNS
    )
    await emit(session, scope, *staged)
    return results


def _application(payment: Row, applied: Applied, kind: str, now: datetime) -> Row:
    currency = payment["currency"]
    return {
        "tenant": payment["tenant"],
        "payment_id": payment["payment_id"],
        "invoice_id": applied.invoice_id,
        "account_id": payment["account_id"],
        "kind": kind,
        "amount_minor": to_minor(applied.amount, currency),
        "discount_minor": to_minor(applied.discount, currency),
        "reversed": False,
        "applied_at": now,
    }


def _store_state(row: Row, state: domain.InvoiceState) -> None:
    """Write ``state``'s money back into its invoice ``row``."""
    currency = row["currency"]
    row["paid_minor"] = to_minor(state.paid, currency)
    row["discount_minor"] = to_minor(state.discounted, currency)
    row["credited_minor"] = to_minor(state.credited, currency)
    row["void"] = state.void


# -- reading -----------------------------------------------------------------------


async def load(session: AsyncSession, tenant: str, payment_id: str) -> PaymentOut:
    """A payment of the tenant as the API shows it; ``PaymentNotFound`` otherwise."""
    found = await storage.payments_by_id(session, tenant, [payment_id])
    if payment_id not in found:
        raise PaymentNotFound(f"There is no payment {payment_id!r}.")
    apps = await storage.applications_of(session, [(tenant, payment_id)])
    return payment_view(found[payment_id], apps)


# -- reversing ---------------------------------------------------------------------


async def reverse_payment(
    session: AsyncSession, scope: Scope, payment_id: str, reason: str
) -> PaymentOut:
    """Reverse a payment (bounced, charged back): every invoice it paid, by allocation or
    by credit, owes that money and the discount taken with it again; its credit is
    gone. A second reversal is ``AlreadyReversed`` (409)."""
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
            _store_state(rows[key], domain.undone(storage.invoice_state(rows[key]), applied))
    credit_voided = from_minor(row["credit_minor"] + row["held_minor"], currency)
    row.update(
        credit_minor=0,
        held_minor=0,
        status=domain.PaymentStatus.REVERSED.value,
        reversed_at=now,
        reversal_reason=reason,
        updated_at=now,
    )
    await storage.update_rows(session, payments, [row], storage.PAYMENT_COLUMNS)
    await storage.update_rows(session, applications, live, storage.APPLICATION_COLUMNS)
    await storage.update_rows(
        session, storage.invoices, list(rows.values()), storage.INVOICE_COLUMNS
    )
    await emit(session, scope, events.reversed_(row, undone, credit_voided, reason, now))
    return payment_view(row, apps)


# -- webhooks ----------------------------------------------------------------------


async def record_webhook(
    session: AsyncSession, scope: Scope, provider: str, notice: WebhookIn
) -> tuple[WebhookOut, bool]:
    """Apply a verified processor notice once per event id: a replay returns the first
    result (and True). A payment the ERP already posted (same payment_id) counts once."""
    tenant = scope.tenant
    stored = (
        await session.execute(
            select(webhook_events.c.response).where(
                webhook_events.c.tenant == tenant,
                webhook_events.c.provider == provider,
                webhook_events.c.event_id == notice.id,
            )
        )
    ).scalar_one_or_none()
    if stored is not None:
        return WebhookOut.model_validate(stored), True
    if notice.type == "payment.succeeded":
        payment = WebhookPayment.model_validate(notice.data)
        [result] = await receive_payments(
            session, scope, [payment], f"webhook:{provider}", any_content_replays=True
        )
        if result.problem is not None:
            raise result.problem
        assert result.payment is not None
        out = WebhookOut(
            event_id=notice.id,
            type=notice.type,
            outcome="recorded" if result.status == 201 else "already_recorded",
            payment=result.payment,
            differences=list(result.differences),
        )
    else:
        reversal = WebhookReversalIn.model_validate(notice.data)
        try:
            view = await reverse_payment(session, scope, reversal.payment_id, reversal.reason)
            outcome: Any = "reversed"
        except domain.AlreadyReversed:
            view = await load(session, tenant, reversal.payment_id)
            outcome = "already_reversed"
        out = WebhookOut(event_id=notice.id, type=notice.type, outcome=outcome, payment=view)
    await storage.insert_rows(
        session,
        webhook_events,
        [
            {
                "tenant": tenant,
                "provider": provider,
                "event_id": notice.id,
                "response": out.model_dump(mode="json"),
                "created_at": scope.now,
            }
        ],
    )
    return out, False


# -- credit --------------------------------------------------------------------------


async def account_credit(session: AsyncSession, tenant: str, account_id: str) -> list[Row]:
    """The account's payments with money not applied yet, oldest first."""
    return await storage.payments_with_credit(session, [(tenant, account_id)])
