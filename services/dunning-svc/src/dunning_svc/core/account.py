"""The account: the projection of its events, and the records of its state.

Promise, plan, pause and received payments are immutable-by-convention records
(frozen msgspec ``Struct``s, chosen by measuring: see ``benchmarks/state_records.py``);
a change replaces the record. How they are stored is storage's business
(``dunning_svc.storage``): the core knows no JSON keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import msgspec

from dunning_svc.core.calendar import local_date, zone_of
from dunning_svc.policy import CURRENT


class Received(msgspec.Struct, frozen=True):
    """A payment received on the account: its currency, minor amount and instant (UTC)."""

    currency: str
    amount: int
    received_at: datetime


class Promise(msgspec.Struct, frozen=True):
    """A promise to pay ``amount`` by ``promised_date``, recorded at ``since`` (UTC)."""

    promise_id: str
    currency: str
    amount: int
    promised_date: date
    since: datetime


class Plan(msgspec.Struct, frozen=True):
    """A payment plan agreed at ``since`` (UTC): ``installments`` are ``(due date, minor
    amount)`` in order."""

    plan_id: str
    currency: str
    installments: tuple[tuple[date, int], ...]
    since: datetime


class Paused(msgspec.Struct, frozen=True):
    """A manual pause by ``by``, until ``until`` (a local date) or a resume."""

    reason: str
    until: date | None
    by: str


@dataclass(slots=True)
class InvoiceState:
    """An invoice as dunning-svc knows it, from the events seen so far."""

    invoice_id: str
    currency: str = ""
    issued: bool = False
    amount_due: int = 0
    issue_date: date | None = None
    due_date: date | None = None
    payments: dict[str, int] = field(default_factory=dict)  # payment_id -> minor allocated
    credited: int = 0
    disputed: int = 0
    void: bool = False
    settled: bool = False
    late_fee: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None
    number: str | None = None
    kind: str = "invoice"

    def balance(self, reversed_payments: set[str] | frozenset[str]) -> int:
        """What is still owed, from the events: the amount less payments not reversed
        and credits; 0 once settled (unless a payment on it was reversed) or void."""
        if self.void or not self.issued:
            return 0
        if not self.payments:  # the common case, on the hot path of every sweep
            return 0 if self.settled else max(0, self.amount_due - self.credited)
        reversed_here = any(p in reversed_payments for p in self.payments)
        if self.settled and not reversed_here:
            return 0
        paid = sum(m for p, m in self.payments.items() if p not in reversed_payments)
        return max(0, self.amount_due - paid - self.credited)


@dataclass(slots=True)
class Account:
    """One customer account of one tenant: the projection of its events and where it
    stands on its policy's ladder."""

    tenant: str
    account_id: str
    account_name: str = ""
    contact: dict[str, Any] | None = None
    escalation_contact: dict[str, Any] | None = None
    segment: str = "standard"
    timezone: str = "UTC"
    locale: str = "en"
    invoices: dict[str, InvoiceState] = field(default_factory=dict)
    payments: dict[str, Received] = field(default_factory=dict)  # by payment_id
    reversed_payments: set[str] = field(default_factory=set)
    stage: str = CURRENT
    sequence: int = 0
    cycle: int = 0
    steps_done: list[str] = field(default_factory=list)
    reminded: list[str] = field(default_factory=list)
    #: Stages that charged a fee in this dunning cycle: a re-anchored ladder reaching
    #: them again does not charge twice.
    fees_charged: list[str] = field(default_factory=list)
    policy_version: int | None = None
    pause: Paused | None = None
    promise: Promise | None = None
    plan: Plan | None = None
    credit_hold: bool = False
    handoff: str | None = None  # None, "awaiting_approval" or "requested"
    written_off: bool = False
    last_contact_at: datetime | None = None
    last_sent_at: datetime | None = None
    next_action_at: datetime | None = None

    def balance(self, invoice: InvoiceState) -> int:
        """The invoice's balance as this account's events say."""
        return invoice.balance(self.reversed_payments)

    def balance_on(self, invoice: InvoiceState, day: date) -> int:
        """The invoice's balance at the end of ``day`` in the account's time zone, for
        reports as of a past date: today's balance plus what payments received after
        ``day`` took off it; 0 if it was issued after ``day``.

        A payment counts from the day it was received, and a credit of an earlier
        payment from that payment's day. Voids, reversals and dispute credits count
        from the start: the events keep no date for them here.
        """
        if not invoice.issued or invoice.void:
            return 0
        if invoice.issue_date is not None and invoice.issue_date > day:
            return 0
        later = 0
        zone = zone_of(self.timezone)
        for payment_id, minor in invoice.payments.items():
            received = self.payments.get(payment_id)
            if payment_id in self.reversed_payments or received is None:
                continue
            if received.received_at.astimezone(zone).date() > day:
                later += minor
        return min(invoice.amount_due, self.balance(invoice) + later)

    def open_invoices(self) -> list[InvoiceState]:
        """Issued invoices with a balance, oldest due date first."""
        reversed_payments = self.reversed_payments
        found = [i for i in self.invoices.values() if i.balance(reversed_payments) > 0]
        return sorted(found, key=lambda i: (i.due_date or date.max, i.invoice_id))

    def overdue_invoices(self, today: date) -> list[InvoiceState]:
        """Open invoices past their due date on ``today``, oldest first."""
        return [i for i in self.open_invoices() if i.due_date is not None and i.due_date < today]

    def chased_amount(self, invoice: InvoiceState) -> int:
        """What is chased on the invoice: its balance less the amount in dispute."""
        return max(0, self.balance(invoice) - invoice.disputed)

    def totals(self, invoices: list[InvoiceState], *, chased: bool = False) -> dict[str, int]:
        """Balances (or chased amounts) per currency, currencies sorted."""
        sums: dict[str, int] = {}
        reversed_payments = self.reversed_payments
        for invoice in invoices:
            amount = invoice.balance(reversed_payments)
            if chased:
                amount = max(0, amount - invoice.disputed)
            sums[invoice.currency] = sums.get(invoice.currency, 0) + amount
        if len(sums) < 2:  # one currency (the common case) is in order already
            return sums
        return {c: sums[c] for c in sorted(sums)}

    def local_today(self, now: datetime) -> date:
        """``now`` as a date in the account's time zone."""
        return local_date(now, self.timezone)

    def oldest_days_past_due(self, today: date) -> int:
        """Days past due of the oldest overdue invoice on ``today`` (0 when none)."""
        overdue = self.overdue_invoices(today)
        if not overdue or overdue[0].due_date is None:
            return 0
        return (today - overdue[0].due_date).days

    @property
    def paused(self) -> bool:
        """Whether escalation is paused (manual pause, promise or plan)."""
        return self.pause is not None or self.promise is not None or self.plan is not None

    @property
    def pause_reason(self) -> str | None:
        """Why escalation is paused, if it is."""
        if self.pause is not None:
            return f"manual: {self.pause.reason}"
        if self.promise is not None:
            return (
                f"promise to pay {self.promise.promise_id} until "
                f"{self.promise.promised_date.isoformat()}"
            )
        if self.plan is not None:
            return f"payment plan {self.plan.plan_id}"
        return None

    def received_since(self, currency: str, since: datetime) -> int:
        """Minor units received in ``currency`` at or after ``since``, reversals left out."""
        return sum(
            received.amount
            for payment_id, received in self.payments.items()
            if received.currency == currency
            and payment_id not in self.reversed_payments
            and received.received_at >= since
        )

    def promise_received(self) -> int:
        """Minor units received in the promise's currency since it was recorded (0 without
        one)."""
        if self.promise is None:
            return 0
        return self.received_since(self.promise.currency, self.promise.since)

    def plan_received(self) -> int:
        """Minor units received in the plan's currency since it was agreed (0 without one)."""
        if self.plan is None:
            return 0
        return self.received_since(self.plan.currency, self.plan.since)

    def plan_installments(self) -> list[tuple[date, int, bool]]:
        """The running plan's installments as ``(due_date, minor amount, paid)``, in order.

        Payments since the plan was agreed pay its installments oldest first, as the plan
        check counts them: an installment is paid once everything due up to it has arrived.
        """
        if self.plan is None:
            return []
        received = self.plan_received()
        rows: list[tuple[date, int, bool]] = []
        required = 0
        for due, amount in self.plan.installments:
            required += amount
            rows.append((due, amount, received >= required))
        return rows
