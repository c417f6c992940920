"""Every dunning decision, as pure functions of (account, input, policy, now).

``decide(account, input, policy, now) -> (account, commands, reasons)``: the input is an
event from another service (invoices, payments, notifications), a manual action (a
promise, a plan, a pause, an approval, a write-off, contacts) or ``Tick`` (the account's
timer fired). The account is a projection of the events; the commands are the events
dunning-svc publishes (``NotificationRequested`` and the facts on ``dunning.events``);
the reasons say why, for the timeline. No IO here: the shell loads, stores and emits.

Amounts are integers of the currency's minor unit; dates are the account's local dates.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from dunning_events import (
    AccountWrittenOff,
    Channel,
    CollectionsHandoffRequested,
    CollectorTaskCompleted,
    Contact,
    CreditApplied,
    CreditHoldReleased,
    CreditHoldRequested,
    DunningStageChanged,
    Event,
    InstallmentMissed,
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceSettled,
    InvoiceVoided,
    LateFeeAssessed,
    Money,
    NoticeInvoice,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    NotificationSuppressed,
    PaymentPlanAgreed,
    PaymentReceived,
    PaymentReversed,
    PromiseToPayBroken,
    PromiseToPayKept,
    PromiseToPayRecorded,
)
from dunning_events.invoices import FEE_MONTH_DAYS, late_fee
from dunning_events.money import from_minor, quantize, to_minor
from dunning_svc.policy import CURRENT, BusinessHours, Policy, Step

__all__ = [
    "CURRENT",
    "Account",
    "AgreePlan",
    "ApproveHandoff",
    "DunningConflict",
    "DunningRuleError",
    "Input",
    "InvoiceState",
    "Pause",
    "RecordPromise",
    "Resume",
    "SetContacts",
    "Tick",
    "WriteOff",
    "decide",
]

# -- errors ---------------------------------------------------------------------------


class DunningRuleError(ValueError):
    """A manual action the rules refuse (422), naming the field when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DunningConflict(DunningRuleError):
    """A manual action that conflicts with the account's state (409)."""


# -- the account ------------------------------------------------------------------------


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

    def to_json(self) -> dict[str, Any]:
        """The stored form (JSON types only)."""
        return {
            "id": self.invoice_id,
            "cur": self.currency,
            "iss": self.issued,
            "due_amt": self.amount_due,
            "issued_on": self.issue_date.isoformat() if self.issue_date else None,
            "due_on": self.due_date.isoformat() if self.due_date else None,
            "pay": self.payments,
            "cred": self.credited,
            "disp": self.disputed,
            "void": self.void,
            "settled": self.settled,
            "fee": self.late_fee,
            "contact": self.contact,
            "number": self.number,
            "kind": self.kind,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InvoiceState:
        """The inverse of ``to_json``."""
        return cls(
            invoice_id=data["id"],
            currency=data["cur"],
            issued=data["iss"],
            amount_due=data["due_amt"],
            issue_date=date.fromisoformat(data["issued_on"]) if data["issued_on"] else None,
            due_date=date.fromisoformat(data["due_on"]) if data["due_on"] else None,
            payments=dict(data["pay"]),
            credited=data["cred"],
            disputed=data["disp"],
            void=data["void"],
            settled=data["settled"],
            late_fee=data["fee"],
            contact=data["contact"],
            number=data["number"],
            kind=data["kind"],
        )


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
    #: payment_id -> [currency, minor amount, received_at ISO]
    payments: dict[str, list[Any]] = field(default_factory=dict)
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
    pause: dict[str, Any] | None = None
    promise: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    credit_hold: bool = False
    handoff: str | None = None  # None, "awaiting_approval" or "requested"
    written_off: bool = False
    last_contact_at: datetime | None = None
    last_sent_at: datetime | None = None
    next_action_at: datetime | None = None

    # -- what the projection says --------------------------------------------------

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
        zone = _zone(self.timezone)
        for payment_id, minor in invoice.payments.items():
            received = self.payments.get(payment_id)
            if payment_id in self.reversed_payments or received is None:
                continue
            if datetime.fromisoformat(received[2]).astimezone(zone).date() > day:
                later += minor
        return min(invoice.amount_due, self.balance(invoice) + later)

    def open_invoices(self) -> list[InvoiceState]:
        """Issued invoices with a balance, oldest due date first."""
        found = [i for i in self.invoices.values() if self.balance(i) > 0]
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
        for invoice in invoices:
            amount = self.chased_amount(invoice) if chased else self.balance(invoice)
            sums[invoice.currency] = sums.get(invoice.currency, 0) + amount
        return {c: sums[c] for c in sorted(sums)}

    def local_today(self, now: datetime) -> date:
        """``now`` as a date in the account's time zone."""
        return now.astimezone(_zone(self.timezone)).date()

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
            return f"manual: {self.pause['reason']}"
        if self.promise is not None:
            return f"promise to pay {self.promise['id']} until {self.promise['date']}"
        if self.plan is not None:
            return f"payment plan {self.plan['id']}"
        return None

    # -- storage -----------------------------------------------------------------

    def state_json(self) -> dict[str, Any]:
        """Everything but the identity and the indexed columns, as JSON types."""
        return {
            "name": self.account_name,
            "contact": self.contact,
            "esc": self.escalation_contact,
            "tz": self.timezone,
            "loc": self.locale,
            "inv": [self.invoices[k].to_json() for k in sorted(self.invoices)],
            "pay": self.payments,
            "rev": sorted(self.reversed_payments),
            "seq": self.sequence,
            "cycle": self.cycle,
            "done": self.steps_done,
            "rem": self.reminded,
            "fees": self.fees_charged,
            "pause": self.pause,
            "promise": self.promise,
            "plan": self.plan,
            "hold": self.credit_hold,
            "handoff": self.handoff,
            "last_sent": self.last_sent_at.isoformat() if self.last_sent_at else None,
        }

    @classmethod
    def from_state(
        cls,
        tenant: str,
        account_id: str,
        *,
        segment: str,
        stage: str,
        policy_version: int | None,
        written_off: bool,
        last_contact_at: datetime | None,
        next_action_at: datetime | None,
        state: dict[str, Any],
    ) -> Account:
        """The account from its stored columns and ``state_json``."""
        last_sent = state.get("last_sent")
        return cls(
            tenant=tenant,
            account_id=account_id,
            account_name=state["name"],
            contact=state["contact"],
            escalation_contact=state["esc"],
            segment=segment,
            timezone=state["tz"],
            locale=state["loc"],
            invoices={i["id"]: InvoiceState.from_json(i) for i in state["inv"]},
            payments=dict(state["pay"]),
            reversed_payments=set(state["rev"]),
            stage=stage,
            sequence=state["seq"],
            cycle=state["cycle"],
            steps_done=list(state["done"]),
            reminded=list(state["rem"]),
            fees_charged=list(state.get("fees", [])),
            policy_version=policy_version,
            pause=state["pause"],
            promise=state["promise"],
            plan=state["plan"],
            credit_hold=state["hold"],
            handoff=state["handoff"],
            written_off=written_off,
            last_contact_at=last_contact_at,
            last_sent_at=datetime.fromisoformat(last_sent) if last_sent else None,
            next_action_at=next_action_at,
        )


# -- inputs that are not events -------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """The account's timer fired (or a scheduler looked at it): re-evaluate as of now."""


@dataclass(frozen=True)
class RecordPromise:
    """A collector recorded the customer's promise to pay ``amount`` by ``promised_date``."""

    promise_id: str
    currency: str
    amount: int
    promised_date: date
    by: str


@dataclass(frozen=True)
class AgreePlan:
    """A payment plan: ``installments`` are ``(due_date, minor amount)`` in order."""

    plan_id: str
    currency: str
    installments: tuple[tuple[date, int], ...]
    by: str


@dataclass(frozen=True)
class Pause:
    """Pause escalation by hand, until ``until`` (a local date) or a resume."""

    reason: str
    until: date | None
    by: str


@dataclass(frozen=True)
class Resume:
    """End a manual pause, a promise or a plan by hand."""

    by: str


@dataclass(frozen=True)
class ApproveHandoff:
    """A person approves the handoff the policy holds for approval."""

    by: str


@dataclass(frozen=True)
class WriteOff:
    """Write the account's open balance off; nothing more is sent."""

    reason: str
    by: str


@dataclass(frozen=True)
class SetContacts:
    """Who receives notices: ``contact`` replaces the invoices' contact when given;
    ``escalation_contact`` hears from the policy's ``escalation_contact.from_stage``."""

    contact: dict[str, Any] | None
    escalation_contact: dict[str, Any] | None
    by: str


ManualAction = RecordPromise | AgreePlan | Pause | Resume | ApproveHandoff | WriteOff | SetContacts
Input = Event | ManualAction | Tick


# -- decide ----------------------------------------------------------------------------


def decide(
    account: Account, input: Input, policy: Policy, now: datetime
) -> tuple[Account, list[Event], list[str]]:
    """The account after ``input`` at ``now`` under ``policy``, the events to publish and
    the reasons for every decision. ``account`` itself is left as it was."""
    mine = copy.deepcopy(account)
    commands, reasons = decide_in_place(mine, input, policy, now)
    return mine, commands, reasons


def decide_in_place(
    account: Account, input: Input, policy: Policy, now: datetime
) -> tuple[list[Event], list[str]]:
    """``decide`` changing ``account`` itself (the batch handler owns the copy it loaded)."""
    out: list[Event] = []
    reasons: list[str] = []
    apply(account, input, policy, now, out, reasons)
    escalate(account, policy, now, out, reasons)
    return out, reasons


# -- the projection ----------------------------------------------------------------------


def apply(
    account: Account,
    input: Input,
    policy: Policy,
    now: datetime,
    out: list[Event],
    reasons: list[str],
) -> None:
    """Fold ``input`` into the account (no escalation yet); manual actions that the rules
    refuse raise ``DunningRuleError`` and change nothing."""
    if isinstance(input, Tick):
        return
    if isinstance(input, CollectorTaskCompleted):
        _apply_call_outcome(account, input, policy, now, out, reasons)
        return
    if isinstance(input, Event):
        _apply_event(account, input, reasons)
        return
    _apply_manual(account, input, policy, now, out, reasons)


def _invoice(account: Account, invoice_id: str) -> InvoiceState:
    found = account.invoices.get(invoice_id)
    if found is None:
        found = account.invoices[invoice_id] = InvoiceState(invoice_id)
    return found


def _money(amount: Money) -> int:
    return to_minor(amount.amount, amount.currency)


def _apply_event(account: Account, event: Event, reasons: list[str]) -> None:
    if isinstance(event, InvoiceIssued):
        invoice = _invoice(account, event.invoice_id)
        invoice.issued = True
        invoice.currency = event.amount_due.currency
        invoice.amount_due = _money(event.amount_due)
        invoice.issue_date = event.issue_date
        invoice.due_date = event.due_date
        invoice.late_fee = (
            event.terms.late_fee.model_dump(mode="json") if event.terms.late_fee else None
        )
        invoice.contact = event.contact.model_dump(mode="json", exclude_none=True)
        invoice.number = event.metadata.get("number")
        invoice.kind = event.metadata.get("kind", "invoice")
        account.account_name = event.account_name
        account.segment = event.segment
        account.timezone = event.timezone
        account.locale = event.locale
        reasons.append(
            f"{event.invoice_id} issued: {event.amount_due.amount} {invoice.currency} "
            f"due {event.due_date.isoformat()}"
        )
    elif isinstance(event, InvoiceOverdue):
        invoice = _invoice(account, event.invoice_id)
        if invoice.due_date is None:
            invoice.due_date = event.due_date
            invoice.currency = event.balance.currency
        reasons.append(f"{event.invoice_id} reported overdue ({event.days_past_due} days)")
    elif isinstance(event, InvoiceVoided):
        _invoice(account, event.invoice_id).void = True
        reasons.append(f"{event.invoice_id} voided: nothing is owed on it")
    elif isinstance(event, InvoiceDisputed):
        invoice = _invoice(account, event.invoice_id)
        invoice.disputed = _money(event.disputed_amount)
        reasons.append(
            f"{event.invoice_id} disputed ({event.disputed_amount.amount} "
            f"{event.disputed_amount.currency}): that amount is not chased"
        )
    elif isinstance(event, InvoiceDisputeResolved):
        invoice = _invoice(account, event.invoice_id)
        invoice.disputed = 0
        credited = event.credited_amount
        if event.resolution == "upheld" and credited is not None:
            invoice.credited = _money(credited)
        reasons.append(f"dispute on {event.invoice_id} {event.resolution}: chasing resumes")
    elif isinstance(event, InvoiceSettled):
        _invoice(account, event.invoice_id).settled = True
        reasons.append(f"{event.invoice_id} settled")
    elif isinstance(event, PaymentReceived):
        account.payments[event.payment_id] = [
            event.amount.currency,
            _money(event.amount),
            event.received_at.astimezone(UTC).isoformat(),
        ]
        for allocation in event.allocations:
            invoice = _invoice(account, allocation.invoice_id)
            if not invoice.currency:
                invoice.currency = allocation.amount.currency
            # An early-payment discount settles as much as money does (payment-svc's rule).
            invoice.payments[event.payment_id] = to_minor(
                allocation.settles(), allocation.amount.currency
            )
        reasons.append(
            f"payment {event.payment_id} of {event.amount.amount} {event.amount.currency} received"
        )
    elif isinstance(event, CreditApplied):
        # Credit of an earlier payment, applied to an invoice that arrived after it: one
        # more allocation of that payment, so its reversal reopens this invoice too.
        invoice = _invoice(account, event.invoice_id)
        if not invoice.currency:
            invoice.currency = event.amount.currency
        discount = event.discount.amount if event.discount is not None else Decimal(0)
        invoice.payments[event.payment_id] = invoice.payments.get(event.payment_id, 0) + to_minor(
            event.amount.amount + discount, event.amount.currency
        )
        reasons.append(
            f"credit of payment {event.payment_id} applied to {event.invoice_id}: "
            f"{event.amount.amount} {event.amount.currency}"
        )
    elif isinstance(event, PaymentReversed):
        account.reversed_payments.add(event.payment_id)
        reasons.append(f"payment {event.payment_id} reversed: the invoices it paid reopen")
    elif isinstance(event, NotificationSent):
        account.last_sent_at = event.sent_at.astimezone(UTC)
        reasons.append(f"notice {event.notification_id} sent by {event.channel}")
    elif isinstance(event, NotificationFailed):
        reasons.append(
            f"notice {event.notification_id} by {event.channel} failed"
            f"{' for good' if event.permanent else ''}: {event.error}"
        )
    elif isinstance(event, NotificationSuppressed):
        reasons.append(
            f"notice {event.notification_id} by {event.channel} not sent "
            f"({event.reason}): {event.detail}"
        )
    else:
        reasons.append(f"{event.event_type} does not concern the escalation")


def _apply_call_outcome(
    account: Account,
    event: CollectorTaskCompleted,
    policy: Policy,
    now: datetime,
    out: list[Event],
    reasons: list[str],
) -> None:
    """A collector's call on the timeline; a ``promised`` outcome records a promise to pay
    as the API's promise-to-pay does, unless the rules refuse it (then the timeline says
    why, and the collector's note stays there)."""
    note = f": {event.note}" if event.note else ""
    reasons.append(
        f"call task {event.task_id} completed by {event.completed_by}: {event.outcome}{note}"
    )
    if event.outcome != "promised" or event.promised_amount is None or event.promised_date is None:
        return
    promise = RecordPromise(
        promise_id=f"call-{event.task_id}",
        currency=event.promised_amount.currency,
        amount=_money(event.promised_amount),
        promised_date=event.promised_date,
        by=event.completed_by,
    )
    try:
        _apply_manual(account, promise, policy, now, out, reasons)
    except DunningRuleError as refused:
        reasons.append(f"the promise from call task {event.task_id} was not recorded: {refused}")


def _apply_manual(
    account: Account,
    action: ManualAction,
    policy: Policy,
    now: datetime,
    out: list[Event],
    reasons: list[str],
) -> None:
    today = account.local_today(now)
    if isinstance(action, SetContacts):
        if action.contact is not None:
            account.contact = action.contact
        account.escalation_contact = action.escalation_contact
        reasons.append(f"contacts changed by {action.by}")
        return
    if account.written_off:
        raise DunningConflict("The account was written off; nothing can change it any more.")
    if isinstance(action, RecordPromise):
        if account.promise is not None:
            raise DunningConflict(
                f"Promise {account.promise['id']} is still open; it must be kept or broken first.",
            )
        if account.plan is not None:
            raise DunningConflict("A payment plan is running; a promise cannot replace it.")
        if action.promised_date < today:
            raise DunningRuleError("must not be in the past", "promised_date")
        if action.promised_date > today + timedelta(days=policy.max_promise_days):
            raise DunningRuleError(
                f"must be at most {policy.max_promise_days} days ahead", "promised_date"
            )
        if not account.open_invoices():
            raise DunningConflict("Nothing is open on the account; there is nothing to promise.")
        account.promise = {
            "id": action.promise_id,
            "cur": action.currency,
            "amount": action.amount,
            "date": action.promised_date.isoformat(),
            "since": now.astimezone(UTC).isoformat(),
        }
        out.append(
            PromiseToPayRecorded(
                account_id=account.account_id,
                promise_id=action.promise_id,
                amount=_as_money(action.amount, action.currency),
                promised_date=action.promised_date,
                recorded_by=action.by,
            )
        )
        reasons.append(
            f"promise {action.promise_id} recorded by {action.by}: escalation pauses until "
            f"{action.promised_date.isoformat()} plus {policy.promise_grace_days} days' grace"
        )
    elif isinstance(action, AgreePlan):
        if account.plan is not None:
            raise DunningConflict(f"Payment plan {account.plan['id']} is already running.")
        if action.installments[0][0] < today:
            raise DunningRuleError("the first installment must not be in the past", "installments")
        if not account.open_invoices():
            raise DunningConflict("Nothing is open on the account; there is nothing to plan.")
        account.promise = None
        account.plan = {
            "id": action.plan_id,
            "cur": action.currency,
            "inst": [[d.isoformat(), m] for d, m in action.installments],
            "since": now.astimezone(UTC).isoformat(),
        }
        out.append(
            PaymentPlanAgreed(
                account_id=account.account_id,
                plan_id=action.plan_id,
                currency=action.currency,
                installments=[
                    {"due_date": d, "amount": _as_money(m, action.currency)}
                    for d, m in action.installments
                ],
            )
        )
        reasons.append(
            f"payment plan {action.plan_id} agreed by {action.by} "
            f"({len(action.installments)} installments): it replaces the ladder"
        )
    elif isinstance(action, Pause):
        if action.until is not None and action.until <= today:
            raise DunningRuleError("must be after today", "until")
        account.pause = {
            "reason": action.reason,
            "until": action.until.isoformat() if action.until else None,
            "by": action.by,
        }
        until = f" until {action.until.isoformat()}" if action.until else ""
        reasons.append(f"paused by {action.by}{until}: {action.reason}")
    elif isinstance(action, Resume):
        if not account.paused:
            raise DunningConflict("The account is not paused.")
        what = account.pause_reason
        account.pause = account.promise = account.plan = None
        reasons.append(f"resumed by {action.by} (was: {what}); escalation goes on where it left")
    elif isinstance(action, ApproveHandoff):
        if account.handoff != "awaiting_approval":
            raise DunningConflict("No handoff is waiting for approval on this account.")
        account.handoff = "requested"
        out.append(_handoff(account, today, f"handoff approved by {action.by}"))
        reasons.append(f"handoff approved by {action.by}: the account goes to collections")
    elif isinstance(action, WriteOff):
        open_ = account.totals(account.open_invoices())
        if not open_:
            raise DunningConflict("Nothing is open on the account; there is nothing to write off.")
        account.written_off = True
        account.pause = account.promise = account.plan = None
        out.append(
            AccountWrittenOff(
                account_id=account.account_id,
                written_off=[_as_money(m, c) for c, m in open_.items()],
                reason=action.reason,
                written_off_by=action.by,
            )
        )
        reasons.append(f"written off by {action.by}: {action.reason}; nothing more is sent")
        if account.credit_hold:
            account.credit_hold = False
            out.append(
                CreditHoldReleased(account_id=account.account_id, reason="account written off")
            )


# -- the escalation ------------------------------------------------------------------------


def escalate(
    account: Account, policy: Policy, now: datetime, out: list[Event], reasons: list[str]
) -> None:
    """Move the account along its ladder as of ``now`` and set its next timer."""
    wakes: list[datetime] = []
    if account.written_off:
        account.next_action_at = None
        return
    zone = _zone(account.timezone)
    hours = policy.business_hours
    today = account.local_today(now)
    overdue = account.overdue_invoices(today)

    # A full payment (nothing overdue any more) returns the account to current at once.
    if not overdue and policy.rank(account.stage) > _reminder_rank(policy):
        _back_to_current(account, policy, now, today, out, reasons)
    _check_promise(account, policy, now, today, out, reasons, wakes)
    _check_plan(account, policy, now, today, out, reasons, wakes)
    if account.pause is not None:
        until = account.pause["until"]
        if until is not None and date.fromisoformat(until) <= today:
            reasons.append(f"manual pause ended on {until}: escalation resumes")
            account.pause = None
        elif until is not None:
            wakes.append(_opening(date.fromisoformat(until), zone, hours))

    if not account.paused:
        if overdue:
            _ladder(account, policy, now, today, overdue, out, reasons, wakes)
        else:
            _reminder(account, policy, now, today, out, reasons, wakes)
        # An open invoice not yet overdue wakes the account when it will be.
        first = policy.ladder[0].days_past_due or 1
        for invoice in account.open_invoices():
            if invoice.due_date is not None and invoice.due_date >= today:
                wakes.append(_opening(invoice.due_date + timedelta(days=first), zone, hours))
                break
    # Only the future: a timer due again at once would make the sweep go round in circles.
    future = [w for w in wakes if w > now]
    account.next_action_at = min(future) if future else None


def _reminder_rank(policy: Policy) -> int:
    return 0 if policy.reminder is not None else -1


def _back_to_current(
    account: Account,
    policy: Policy,
    now: datetime,
    today: date,
    out: list[Event],
    reasons: list[str],
) -> None:
    was = account.stage
    reason = "nothing is overdue any more"
    _change_stage(account, policy, CURRENT, reason, out, reasons)
    account.steps_done = []
    account.fees_charged = []
    account.handoff = None
    account.policy_version = None
    if account.credit_hold:
        account.credit_hold = False
        out.append(CreditHoldReleased(account_id=account.account_id, reason=reason))
        reasons.append("credit hold released: the account is current")
    if policy.thank_you:
        not_before = _next_open(now, _zone(account.timezone), policy.business_hours)
        out.append(
            _notice(account, policy, CURRENT, "email", "thank_you", today, not_before, None, None)
        )
        reasons.append(f"paid up from {was}: pending steps cancelled, a thank-you requested")


def _check_promise(
    account: Account,
    policy: Policy,
    now: datetime,
    today: date,
    out: list[Event],
    reasons: list[str],
    wakes: list[datetime],
) -> None:
    promise = account.promise
    if promise is None:
        return
    currency, amount = promise["cur"], promise["amount"]
    received = _received_since(account, currency, promise["since"])
    promised = date.fromisoformat(promise["date"])
    if received >= amount:
        out.append(
            PromiseToPayKept(
                account_id=account.account_id,
                promise_id=promise["id"],
                amount=_as_money(amount, currency),
                promised_date=promised,
                amount_received=_as_money(received, currency),
            )
        )
        reasons.append(f"promise {promise['id']} kept: the promised amount arrived")
        account.promise = None
        return
    deadline = promised + timedelta(days=policy.promise_grace_days)
    if today > deadline:
        out.append(
            PromiseToPayBroken(
                account_id=account.account_id,
                promise_id=promise["id"],
                amount=_as_money(amount, currency),
                promised_date=promised,
                amount_received=_as_money(received, currency),
            )
        )
        reasons.append(
            f"promise {promise['id']} broken: {from_minor(received, currency)} of "
            f"{from_minor(amount, currency)} {currency} arrived by {deadline.isoformat()}; "
            f"escalation resumes at {account.stage}"
        )
        account.promise = None
        return
    wakes.append(
        _opening(deadline + timedelta(days=1), _zone(account.timezone), policy.business_hours)
    )


def _check_plan(
    account: Account,
    policy: Policy,
    now: datetime,
    today: date,
    out: list[Event],
    reasons: list[str],
    wakes: list[datetime],
) -> None:
    plan = account.plan
    if plan is None:
        return
    currency = plan["cur"]
    received = _received_since(account, currency, plan["since"])
    installments = [(date.fromisoformat(d), m) for d, m in plan["inst"]]
    total = sum(m for _, m in installments)
    if received >= total or not account.open_invoices():
        reasons.append(f"payment plan {plan['id']} completed")
        account.plan = None
        return
    grace = timedelta(days=policy.installment_grace_days)
    required = 0
    for due, amount in installments:
        if today <= due + grace:
            wakes.append(
                _opening(
                    due + grace + timedelta(days=1), _zone(account.timezone), policy.business_hours
                )
            )
            return
        required += amount
        if received < required:
            out.append(
                InstallmentMissed(
                    account_id=account.account_id,
                    plan_id=plan["id"],
                    due_date=due,
                    amount_due=_as_money(required, currency),
                    amount_received=_as_money(received, currency),
                )
            )
            reasons.append(
                f"installment of {due.isoformat()} missed on plan {plan['id']}: "
                f"{from_minor(received, currency)} of {from_minor(required, currency)} "
                f"{currency} arrived; the ladder resumes at {account.stage}"
            )
            account.plan = None
            return


def promise_received(account: Account) -> int:
    """Minor units received in the promise's currency since it was recorded (0 without one)."""
    if account.promise is None:
        return 0
    return _received_since(account, account.promise["cur"], account.promise["since"])


def plan_received(account: Account) -> int:
    """Minor units received in the plan's currency since it was agreed (0 without one)."""
    if account.plan is None:
        return 0
    return _received_since(account, account.plan["cur"], account.plan["since"])


def plan_installments(account: Account) -> list[tuple[date, int, bool]]:
    """The running plan's installments as ``(due_date, minor amount, paid)``, in order.

    Payments since the plan was agreed pay its installments oldest first, as the plan
    check counts them: an installment is paid once everything due up to it has arrived.
    """
    plan = account.plan
    if plan is None:
        return []
    received = plan_received(account)
    rows: list[tuple[date, int, bool]] = []
    required = 0
    for due, amount in plan["inst"]:
        required += amount
        rows.append((date.fromisoformat(due), amount, received >= required))
    return rows


def _received_since(account: Account, currency: str, since: str) -> int:
    start = datetime.fromisoformat(since)
    return sum(
        minor
        for payment_id, (cur, minor, at) in account.payments.items()
        if cur == currency
        and payment_id not in account.reversed_payments
        and datetime.fromisoformat(at) >= start
    )


def _ladder(
    account: Account,
    policy: Policy,
    now: datetime,
    today: date,
    overdue: list[InvoiceState],
    out: list[Event],
    reasons: list[str],
    wakes: list[datetime],
) -> None:
    zone, hours = _zone(account.timezone), policy.business_hours
    chased = [i for i in overdue if account.chased_amount(i) > 0]
    if not chased:
        return  # the whole overdue balance is in dispute: silent until it is resolved
    threshold = policy.small_balance
    totals = account.totals(chased, chased=True)
    if all(from_minor(m, c) < threshold for c, m in totals.items()):
        return  # below the small-balance threshold: not chased
    oldest = chased[0]
    assert oldest.due_date is not None
    days = (today - oldest.due_date).days
    ladder = policy.ladder
    target: Step | None = None
    for step in ladder:
        assert step.days_past_due is not None
        if step.days_past_due <= days:
            target = step
        else:
            wakes.append(
                _opening(oldest.due_date + timedelta(days=step.days_past_due), zone, hours)
            )
            break
    if target is None:
        return
    target_rank = policy.rank(target.stage)
    current_rank = policy.rank(account.stage)
    if target_rank < current_rank:
        # Paying off the oldest invoice re-anchors the ladder on the next oldest.
        _change_stage(
            account,
            policy,
            target.stage,
            f"{oldest.invoice_id}, now the oldest overdue invoice, is {days} days past due",
            out,
            reasons,
        )
        account.steps_done = [s.stage for s in policy.steps if policy.rank(s.stage) <= target_rank]
        return
    if target.stage in account.steps_done:
        return
    # Gates: business hours in the account's time zone, then the contact cap.
    opening = _next_open(now, zone, hours)
    if opening > now:
        wakes.append(opening)
        reasons.append(
            f"{target.stage} is due; it waits for business hours ({opening.isoformat()})"
        )
        return
    if account.last_contact_at is not None and policy.contact_cap_days:
        free = account.last_contact_at + timedelta(days=policy.contact_cap_days)
        if free > now:
            later = _next_open(free, zone, hours)
            wakes.append(later)
            reasons.append(
                f"{target.stage} is due; the contact cap ({policy.contact_cap_days} days) "
                f"holds it until {later.isoformat()}"
            )
            return
    skipped = [
        s.stage
        for s in ladder
        if policy.rank(s.stage) < target_rank and s.stage not in account.steps_done
    ]
    account.steps_done = [s.stage for s in policy.steps if policy.rank(s.stage) <= target_rank]
    if target.min_balance is not None and all(
        from_minor(m, c) < target.min_balance for c, m in totals.items()
    ):
        reasons.append(
            f"{target.stage} skipped: the chased overdue balance is below its minimum "
            f"of {target.min_balance}"
        )
        return
    if account.policy_version is None:
        account.policy_version = policy.version
    why = f"{oldest.invoice_id} is {days} days past due"
    if skipped:
        why += f" (skipped {', '.join(skipped)}: one consolidated notice per step)"
    _change_stage(account, policy, target.stage, why, out, reasons)
    _run_step(account, policy, target, now, today, chased, totals, out, reasons)


def _run_step(
    account: Account,
    policy: Policy,
    step: Step,
    now: datetime,
    today: date,
    chased: list[InvoiceState],
    totals: dict[str, int],
    out: list[Event],
    reasons: list[str],
) -> None:
    fee: Money | None = None
    if step.fee is not None and step.stage not in account.fees_charged:
        fee_event = _fee(account, step, today, chased[0])
        if fee_event is not None:
            account.fees_charged.append(step.stage)
            out.append(fee_event)
            fee = fee_event.amount
            reasons.append(f"late fee of {fee.amount} {fee.currency}: {fee_event.reason}")
    overdue_balance = [_as_money(m, c) for c, m in totals.items() if m > 0]
    for action in step.actions:
        if action == "credit_hold" and not account.credit_hold:
            account.credit_hold = True
            out.append(
                CreditHoldRequested(
                    account_id=account.account_id,
                    stage=step.stage,
                    overdue_balance=overdue_balance,
                    reason=f"the account reached {step.stage}",
                )
            )
            reasons.append("credit hold requested: order systems should stop shipping")
        elif action == "handoff" and account.handoff is None:
            if policy.handoff_requires_approval:
                account.handoff = "awaiting_approval"
                reasons.append("handoff due: it waits for a person's approval (policy)")
            else:
                account.handoff = "requested"
                out.append(_handoff(account, today, f"the account reached {step.stage}"))
                reasons.append("handoff to collections requested")
    next_step = _next_step(policy, step)
    out += _notices(
        account,
        policy,
        step.stage,
        step.notice_channels,
        step.notice_template,
        today,
        now,
        fee,
        next_step,
    )
    if step.notice_channels:
        account.last_contact_at = now
        reasons.append(f"{step.stage} notice requested by {', '.join(step.notice_channels)}")


@dataclass(frozen=True)
class NextStep:
    """What follows a step if nothing is paid: the stage, in how many days, and the same
    in English words for the notice's ``next_step``."""

    stage: str
    days: int
    text: str


def _after_reminder(policy: Policy, reminder: Step) -> NextStep | None:
    """After a pre-due reminder: the ladder's first step, counted from the reminder."""
    if not policy.ladder:
        return None
    first = policy.ladder[0]
    days = (reminder.days_before_due or 0) + (first.days_past_due or 0)
    return NextStep(first.stage, days, "a notice listing every overdue invoice after the due date")


def _next_step(policy: Policy, step: Step) -> NextStep | None:
    later = [s for s in policy.ladder if policy.rank(s.stage) > policy.rank(step.stage)]
    if not later:
        return None
    nxt = later[0]
    gap = max(0, (nxt.days_past_due or 0) - (step.days_past_due or 0))
    what = (
        "handoff to a collection agency"
        if "handoff" in nxt.actions
        else nxt.stage.replace("_", " ")
    )
    return NextStep(nxt.stage, gap, f"{what} in {gap} days")


def _reminder(
    account: Account,
    policy: Policy,
    now: datetime,
    today: date,
    out: list[Event],
    reasons: list[str],
    wakes: list[datetime],
) -> None:
    zone, hours = _zone(account.timezone), policy.business_hours
    step = policy.reminder
    open_ = account.open_invoices()
    if account.stage != CURRENT and not open_:
        _change_stage(account, policy, CURRENT, "nothing is open any more", out, reasons)
        return
    if step is None or step.days_before_due is None:
        return
    reminded = set(account.reminded)
    account.reminded = [i for i in account.reminded if i in {x.invoice_id for x in open_}]
    window = timedelta(days=step.days_before_due)
    due_soon = [
        i
        for i in open_
        if i.invoice_id not in reminded
        and i.due_date is not None
        and i.due_date - window <= today <= i.due_date
        and account.chased_amount(i) > 0
    ]
    if not due_soon:
        later = [
            i.due_date - window
            for i in open_
            if i.invoice_id not in reminded
            and i.due_date is not None
            and i.due_date - window > today
        ]
        if later:
            wakes.append(_opening(min(later), zone, hours))
        return
    totals = account.totals(due_soon, chased=True)
    if all(from_minor(m, c) < policy.small_balance for c, m in totals.items()):
        return
    opening = _next_open(now, zone, hours)
    if opening > now:
        wakes.append(opening)
        return
    if account.last_contact_at is not None and policy.contact_cap_days:
        free = account.last_contact_at + timedelta(days=policy.contact_cap_days)
        if free > now:
            wakes.append(_next_open(free, zone, hours))
            return
    account.reminded = sorted({*account.reminded, *(i.invoice_id for i in due_soon)})
    if account.stage == CURRENT:
        _change_stage(
            account,
            policy,
            step.stage,
            f"{due_soon[0].invoice_id} is due on {due_soon[0].due_date}",
            out,
            reasons,
        )
    out += _notices(
        account,
        policy,
        step.stage,
        step.notice_channels,
        step.notice_template,
        today,
        now,
        None,
        _after_reminder(policy, step),
        # A second invoice falling due in the same stage is a contact of its own: with
        # the stage's id, notify-svc took it for a redelivery of the first and dropped it.
        moment=sorted(i.invoice_id for i in due_soon),
    )
    account.last_contact_at = now
    reasons.append(
        f"reminder requested for {', '.join(i.invoice_id for i in due_soon)} "
        f"(due within {step.days_before_due} days)"
    )


def _change_stage(
    account: Account, policy: Policy, stage: str, reason: str, out: list[Event], reasons: list[str]
) -> None:
    if stage == account.stage:
        return
    account.sequence += 1
    if account.stage == CURRENT:
        account.cycle += 1
    out.append(
        DunningStageChanged(
            account_id=account.account_id,
            from_stage=account.stage,
            to_stage=stage,
            reason=reason[:1000],
            segment=policy.segment,
            sequence=account.sequence,
        )
    )
    reasons.append(f"stage {account.stage} -> {stage}: {reason}")
    account.stage = stage


# -- what goes out ----------------------------------------------------------------------


@lru_cache(maxsize=65_536)
def _as_money(minor: int, currency: str) -> Money:
    # from_minor gives exactly the currency's places, so the result is a valid Money;
    # Money is frozen, so one instance can serve every event that states the amount.
    return Money.model_construct(currency=currency, amount=from_minor(minor, currency))


def _contact(data: dict[str, Any]) -> Contact:
    return _contact_of(tuple(sorted(data.items())))


@lru_cache(maxsize=65_536)
def _contact_of(items: tuple[tuple[str, Any], ...]) -> Contact:
    # Contacts reach the state only through validated events and request bodies.
    values: dict[str, Any] = {"email": None, "phone": None, **dict(items)}
    return Contact.model_construct(**values)


def _key(*parts: object) -> str:
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _recipient(account: Account, oldest: InvoiceState | None) -> dict[str, Any]:
    if account.contact is not None:
        return account.contact
    if oldest is not None and oldest.contact is not None:
        return oldest.contact
    for invoice in account.invoices.values():
        if invoice.contact is not None:
            return invoice.contact
    return {"name": account.account_name or account.account_id[:200]}


def _notice(
    account: Account,
    policy: Policy,
    stage: str,
    channel: Channel,
    template: str,
    today: date,
    not_before: datetime,
    fee: Money | None,
    next_step: NextStep | None,
) -> NotificationRequested:
    return _notices(
        account, policy, stage, (channel,), template, today, not_before, fee, next_step
    )[0]


def _notices(
    account: Account,
    policy: Policy,
    stage: str,
    channels: Sequence[Channel],
    template: str,
    today: date,
    not_before: datetime,
    fee: Money | None,
    next_step: NextStep | None,
    *,
    moment: Sequence[str] = (),
) -> list[NotificationRequested]:
    """One notice per channel; what they list is worked out once for all of them.

    A notice's id is its idempotency key at notify-svc: one per contact moment and
    channel. A stage change makes the moment (cycle, sequence, stage); ``moment`` adds
    what else tells two contacts in one stage apart (a reminder per invoice falling due).
    """
    if not channels:
        return []
    open_ = account.open_invoices()
    overdue = [i for i in open_ if i.due_date is not None and i.due_date < today]
    recipient = _recipient(account, overdue[0] if overdue else (open_[0] if open_ else None))
    cc: list[dict[str, Any]] = []
    escalation = account.escalation_contact
    if (
        escalation is not None
        and stage != CURRENT
        and policy.rank(stage) >= policy.rank(policy.escalation_contact.from_stage)
    ):
        if policy.escalation_contact.mode == "to":
            recipient, cc = escalation, [recipient]
        else:
            cc = [escalation]
    listed = open_ if stage != CURRENT else []
    chasing = stage != CURRENT
    # Built without validation: every part comes from validated events, the policy and
    # the money helpers above (the domain tests validate what this produces). The parts
    # are frozen models, so the channels' notices share them.
    recipient_contact = _contact(recipient)
    cc_contacts = [_contact(c) for c in cc]
    invoices = [
        NoticeInvoice.model_construct(
            invoice_id=i.invoice_id,
            number=i.number,
            amount_due=_as_money(i.amount_due, i.currency),
            balance=_as_money(account.balance(i), i.currency),
            due_date=i.due_date,
            days_past_due=(today - i.due_date).days if i.due_date else 0,
        )
        for i in listed[:1000]
        if i.amount_due > 0 and i.due_date is not None
    ]
    total_overdue = [_as_money(m, c) for c, m in account.totals(overdue).items()] if chasing else []
    total_open = [_as_money(m, c) for c, m in account.totals(open_).items()] if chasing else []
    return [
        NotificationRequested.model_construct(
            account_id=account.account_id,
            notification_id="NTF-"
            + _key(
                account.tenant,
                account.account_id,
                account.cycle,
                account.sequence,
                stage,
                channel,
                *moment,
            ),
            account_name=account.account_name or account.account_id[:200],
            stage=stage,
            stage_sequence=account.sequence,
            channel=channel,
            template=template,
            locale=account.locale,
            timezone=account.timezone,
            recipient=recipient_contact,
            cc=list(cc_contacts),
            invoices=list(invoices),
            total_overdue=list(total_overdue),
            total_open=list(total_open),
            fee=fee,
            next_step=next_step.text if next_step else None,
            next_stage=next_step.stage if next_step else None,
            next_step_in_days=next_step.days if next_step else None,
            not_before=not_before,
            # A thank-you is no chase: the cap does not hold it (nor dunning-svc's steps).
            contact_cap_days=policy.contact_cap_days if chasing else 0,
        )
        for channel in channels
    ]


def _handoff(account: Account, today: date, reason: str) -> CollectionsHandoffRequested:
    overdue = account.overdue_invoices(today)
    balance = [_as_money(m, c) for c, m in account.totals(overdue).items() if m > 0]
    if not balance:  # approved after everything was paid: hand off what is open
        balance = [_as_money(m, c) for c, m in account.totals(account.open_invoices()).items()]
    return CollectionsHandoffRequested(
        account_id=account.account_id,
        overdue_balance=balance,
        oldest_days_past_due=account.oldest_days_past_due(today),
        reason=reason,
    )


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _fee(
    account: Account, step: Step, today: date, invoice: InvoiceState
) -> LateFeeAssessed | None:
    assert step.fee is not None and invoice.due_date is not None
    currency = invoice.currency
    balance = from_minor(account.balance(invoice), currency)
    amount: Decimal | None = None
    terms = invoice.late_fee if step.fee.from_terms else None
    if terms is not None:
        days = max(1, (today - invoice.due_date).days)
        amount = late_fee(
            balance,
            currency,
            kind=terms["kind"],
            days_overdue=days,
            amount=_decimal(terms.get("amount")),
            percent=_decimal(terms.get("percent")),
            cap=_decimal(terms.get("cap")),
        )
        if terms["kind"] == "flat":
            how = f"flat late fee of {amount} {currency} from the terms of {invoice.invoice_id}"
        else:
            months = -(-days // FEE_MONTH_DAYS)
            how = (
                f"{terms['percent']}% of {balance} {currency} per started month overdue "
                f"({months} months) on {invoice.invoice_id}"
            )
            if terms.get("cap") is not None and amount == quantize(Decimal(terms["cap"]), currency):
                how += f", capped at {terms['cap']}"
    if amount is None and step.fee.amount is not None:
        amount = step.fee.amount
        how = f"policy fee of {amount} {currency} at {step.stage}"
    if amount is None:
        return None
    amount = quantize(amount, currency, rounding=ROUND_HALF_UP)
    if amount <= 0:
        return None
    return LateFeeAssessed.model_validate(
        {
            "account_id": account.account_id,
            "fee_invoice_id": "FEE-"
            + _key(account.tenant, account.account_id, account.cycle, step.stage),
            "invoice_id": invoice.invoice_id,
            "amount": Money(amount=amount, currency=currency),
            "stage": step.stage,
            "assessed_on": today,
            "reason": how,
            "account_name": account.account_name or account.account_id[:200],
            "contact": _recipient(account, invoice),
            "segment": account.segment,
            "timezone": account.timezone,
            "locale": account.locale,
        }
    )


# -- time -----------------------------------------------------------------------------------


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _opening(day: date, zone: ZoneInfo, hours: BusinessHours) -> datetime:
    """The first opening of business hours on ``day`` or the next business day, in UTC."""
    open_days = hours.weekdays
    for offset in range(8):
        candidate = day + timedelta(days=offset)
        if candidate.weekday() in open_days:
            return datetime.combine(candidate, hours.start, zone).astimezone(UTC)
    raise AssertionError("business hours have at least one day")  # pragma: no cover


def _next_open(now: datetime, zone: ZoneInfo, hours: BusinessHours) -> datetime:
    """``now`` if it is within business hours in ``zone``, else the next opening."""
    local = now.astimezone(zone)
    if local.weekday() in hours.weekdays and hours.start <= local.time() < hours.end:
        return now
    if local.weekday() in hours.weekdays and local.time() < hours.start:
        return _opening(local.date(), zone, hours)
    return _opening(local.date() + timedelta(days=1), zone, hours)


def within_hours(now: datetime, timezone: str, hours: BusinessHours) -> bool:
    """Whether ``now`` falls in business hours in ``timezone``."""
    return _next_open(now, _zone(timezone), hours) == now


def at_local(day: date, clock: time, timezone: str) -> datetime:
    """``day`` at ``clock`` in ``timezone``, as a UTC instant."""
    return datetime.combine(day, clock, _zone(timezone)).astimezone(UTC)
