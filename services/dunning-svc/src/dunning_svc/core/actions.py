"""The projection: events and manual actions folded into the account (no escalation).

Manual actions the rules refuse raise ``DunningRuleError`` and change nothing.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal

from dunning_events import (
    AccountWrittenOff,
    CollectorTaskCompleted,
    CreditApplied,
    CreditHoldReleased,
    Event,
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceSettled,
    InvoiceVoided,
    Money,
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
    PaymentPlanAgreed,
    PaymentReceived,
    PaymentReversed,
    PromiseToPayRecorded,
)
from dunning_events.money import to_minor
from dunning_svc.core.account import Account, InvoiceState, Paused, Plan, Promise, Received
from dunning_svc.core.context import Decision
from dunning_svc.core.errors import DunningConflict, DunningRuleError
from dunning_svc.core.inputs import (
    AgreePlan,
    ApproveHandoff,
    Input,
    ManualAction,
    Pause,
    RecordPromise,
    Resume,
    SetContacts,
    Tick,
    WriteOff,
)
from dunning_svc.core.notices import as_money, handoff

# -- events -----------------------------------------------------------------------------


def apply_input(d: Decision, input: Input) -> None:
    """Fold ``input`` into ``d.account`` (no escalation yet); manual actions that the
    rules refuse raise ``DunningRuleError`` and change nothing."""
    if isinstance(input, Tick):
        return
    if isinstance(input, CollectorTaskCompleted):
        _apply_call_outcome(d, input)
        return
    if isinstance(input, Event):
        _apply_event(d.account, input, d.reasons)
        return
    apply_manual(d, input)


def _invoice(account: Account, invoice_id: str) -> InvoiceState:
    found = account.invoices.get(invoice_id)
    if found is None:
        found = account.invoices[invoice_id] = InvoiceState(invoice_id)
    return found


def _money(amount: Money) -> int:
    return to_minor(amount.amount, amount.currency)


def _apply_event(account: Account, event: Event, reasons: list[str]) -> None:
    match event:
        case InvoiceIssued():
            _issued(account, event, reasons)
        case InvoiceOverdue():
            invoice = _invoice(account, event.invoice_id)
            if invoice.due_date is None:
                invoice.due_date = event.due_date
                invoice.currency = event.balance.currency
            reasons.append(f"{event.invoice_id} reported overdue ({event.days_past_due} days)")
        case InvoiceVoided():
            _invoice(account, event.invoice_id).void = True
            reasons.append(f"{event.invoice_id} voided: nothing is owed on it")
        case InvoiceDisputed():
            _invoice(account, event.invoice_id).disputed = _money(event.disputed_amount)
            reasons.append(
                f"{event.invoice_id} disputed ({event.disputed_amount.amount} "
                f"{event.disputed_amount.currency}): that amount is not chased"
            )
        case InvoiceDisputeResolved():
            _dispute_resolved(account, event, reasons)
        case InvoiceSettled():
            _invoice(account, event.invoice_id).settled = True
            reasons.append(f"{event.invoice_id} settled")
        case PaymentReceived():
            _payment_received(account, event, reasons)
        case CreditApplied():
            _credit_applied(account, event, reasons)
        case PaymentReversed():
            account.reversed_payments.add(event.payment_id)
            reasons.append(f"payment {event.payment_id} reversed: the invoices it paid reopen")
        case NotificationSent() | NotificationFailed() | NotificationSuppressed():
            _notification(account, event, reasons)
        case _:
            reasons.append(f"{event.event_type} does not concern the escalation")


def _issued(account: Account, event: InvoiceIssued, reasons: list[str]) -> None:
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


def _dispute_resolved(account: Account, event: InvoiceDisputeResolved, reasons: list[str]) -> None:
    invoice = _invoice(account, event.invoice_id)
    invoice.disputed = 0
    credited = event.credited_amount
    if event.resolution == "upheld" and credited is not None:
        invoice.credited = _money(credited)
    reasons.append(f"dispute on {event.invoice_id} {event.resolution}: chasing resumes")


def _payment_received(account: Account, event: PaymentReceived, reasons: list[str]) -> None:
    account.payments[event.payment_id] = Received(
        event.amount.currency, _money(event.amount), event.received_at.astimezone(UTC)
    )
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


def _credit_applied(account: Account, event: CreditApplied, reasons: list[str]) -> None:
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


def _notification(
    account: Account,
    event: NotificationSent | NotificationFailed | NotificationSuppressed,
    reasons: list[str],
) -> None:
    if isinstance(event, NotificationSent):
        account.last_sent_at = event.sent_at.astimezone(UTC)
        reasons.append(f"notice {event.notification_id} sent by {event.channel}")
    elif isinstance(event, NotificationFailed):
        reasons.append(
            f"notice {event.notification_id} by {event.channel} failed"
            f"{' for good' if event.permanent else ''}: {event.error}"
        )
    else:
        reasons.append(
            f"notice {event.notification_id} by {event.channel} not sent "
            f"({event.reason}): {event.detail}"
        )


def _apply_call_outcome(d: Decision, event: CollectorTaskCompleted) -> None:
    """A collector's call on the timeline; a ``promised`` outcome records a promise to pay
    as the API's promise-to-pay does, unless the rules refuse it (then the timeline says
    why, and the collector's note stays there)."""
    note = f": {event.note}" if event.note else ""
    d.reasons.append(
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
        apply_manual(d, promise)
    except DunningRuleError as refused:
        d.reasons.append(f"the promise from call task {event.task_id} was not recorded: {refused}")


# -- manual actions ------------------------------------------------------------------------


def apply_manual(d: Decision, action: ManualAction) -> None:
    """One manual action, by its type; only contacts may change on a written-off account."""
    if not isinstance(action, SetContacts) and d.account.written_off:
        raise DunningConflict("The account was written off; nothing can change it any more.")
    match action:
        case SetContacts():
            _set_contacts(d, action)
        case RecordPromise():
            _record_promise(d, action)
        case AgreePlan():
            _agree_plan(d, action)
        case Pause():
            _pause(d, action)
        case Resume():
            _resume(d, action)
        case ApproveHandoff():
            _approve_handoff(d, action)
        case WriteOff():
            _write_off(d, action)


def _set_contacts(d: Decision, action: SetContacts) -> None:
    if action.contact is not None:
        d.account.contact = action.contact
    d.account.escalation_contact = action.escalation_contact
    d.reasons.append(f"contacts changed by {action.by}")


def _record_promise(d: Decision, action: RecordPromise) -> None:
    account, policy, today = d.account, d.policy, d.today
    if account.promise is not None:
        raise DunningConflict(
            f"Promise {account.promise.promise_id} is still open; it must be kept or broken first.",
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
    account.promise = Promise(
        action.promise_id,
        action.currency,
        action.amount,
        action.promised_date,
        d.now.astimezone(UTC),
    )
    d.out.append(
        PromiseToPayRecorded(
            account_id=account.account_id,
            promise_id=action.promise_id,
            amount=as_money(action.amount, action.currency),
            promised_date=action.promised_date,
            recorded_by=action.by,
        )
    )
    d.reasons.append(
        f"promise {action.promise_id} recorded by {action.by}: escalation pauses until "
        f"{action.promised_date.isoformat()} plus {policy.promise_grace_days} days' grace"
    )


def _agree_plan(d: Decision, action: AgreePlan) -> None:
    account = d.account
    if account.plan is not None:
        raise DunningConflict(f"Payment plan {account.plan.plan_id} is already running.")
    if action.installments[0][0] < d.today:
        raise DunningRuleError("the first installment must not be in the past", "installments")
    if not account.open_invoices():
        raise DunningConflict("Nothing is open on the account; there is nothing to plan.")
    account.promise = None
    account.plan = Plan(
        action.plan_id, action.currency, tuple(action.installments), d.now.astimezone(UTC)
    )
    d.out.append(
        PaymentPlanAgreed(
            account_id=account.account_id,
            plan_id=action.plan_id,
            currency=action.currency,
            installments=[
                {"due_date": due, "amount": as_money(minor, action.currency)}
                for due, minor in action.installments
            ],
        )
    )
    d.reasons.append(
        f"payment plan {action.plan_id} agreed by {action.by} "
        f"({len(action.installments)} installments): it replaces the ladder"
    )


def _pause(d: Decision, action: Pause) -> None:
    if action.until is not None and action.until <= d.today:
        raise DunningRuleError("must be after today", "until")
    d.account.pause = Paused(action.reason, action.until, action.by)
    until = f" until {action.until.isoformat()}" if action.until else ""
    d.reasons.append(f"paused by {action.by}{until}: {action.reason}")


def _resume(d: Decision, action: Resume) -> None:
    account = d.account
    if not account.paused:
        raise DunningConflict("The account is not paused.")
    what = account.pause_reason
    account.pause = account.promise = account.plan = None
    d.reasons.append(f"resumed by {action.by} (was: {what}); escalation goes on where it left")


def _approve_handoff(d: Decision, action: ApproveHandoff) -> None:
    account = d.account
    if account.handoff != "awaiting_approval":
        raise DunningConflict("No handoff is waiting for approval on this account.")
    account.handoff = "requested"
    d.out.append(handoff(account, d.today, f"handoff approved by {action.by}"))
    d.reasons.append(f"handoff approved by {action.by}: the account goes to collections")


def _write_off(d: Decision, action: WriteOff) -> None:
    account = d.account
    open_ = account.totals(account.open_invoices())
    if not open_:
        raise DunningConflict("Nothing is open on the account; there is nothing to write off.")
    account.written_off = True
    account.pause = account.promise = account.plan = None
    d.out.append(
        AccountWrittenOff(
            account_id=account.account_id,
            written_off=[as_money(m, c) for c, m in open_.items()],
            reason=action.reason,
            written_off_by=action.by,
        )
    )
    d.reasons.append(f"written off by {action.by}: {action.reason}; nothing more is sent")
    if account.credit_hold:
        account.credit_hold = False
        d.out.append(
            CreditHoldReleased(account_id=account.account_id, reason="account written off")
        )
