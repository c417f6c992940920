"""The escalation: move the account along its policy's ladder as of now, and set its
next timer. Promises, plans and pauses hold the ladder; business hours and the contact
cap hold a step."""

from __future__ import annotations

from bisect import bisect_right
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

from dunning_events import (
    CreditHoldReleased,
    CreditHoldRequested,
    DunningStageChanged,
    InstallmentMissed,
    Money,
    PromiseToPayBroken,
    PromiseToPayKept,
)
from dunning_events.money import from_minor, minor_units
from dunning_svc.core.account import InvoiceState
from dunning_svc.core.calendar import next_open, opening
from dunning_svc.core.context import Decision
from dunning_svc.core.notices import (
    after_reminder,
    as_money,
    built,
    fee,
    handoff,
    next_step,
    notices,
)
from dunning_svc.policy import CURRENT, Policy, Step


def escalate(d: Decision) -> None:
    """Move ``d.account`` along its ladder as of ``d.now`` and set its next timer."""
    account, policy, today = d.account, d.policy, d.today
    if account.written_off:
        account.next_action_at = None
        return
    open_ = d.open_invoices = account.open_invoices()
    overdue = [i for i in open_ if i.due_date is not None and i.due_date < today]
    # A full payment (nothing overdue any more) returns the account to current at once.
    if not overdue and policy.rank(account.stage) > _reminder_rank(policy):
        _back_to_current(d)
    _check_promise(d)
    _check_plan(d)
    _check_pause(d)
    if not account.paused:
        if overdue:
            _ladder(d, overdue)
        else:
            _reminder(d)
        # An open invoice not yet overdue wakes the account when it will be.
        first = policy.ladder[0].days_past_due or 1
        for invoice in open_:
            if invoice.due_date is not None and invoice.due_date >= today:
                d.wakes.append(opening(invoice.due_date + timedelta(days=first), d.zone, d.hours))
                break
    # Only the future: a timer due again at once would make the sweep go round in circles.
    future = [w for w in d.wakes if w > d.now]
    account.next_action_at = min(future) if future else None


def _reminder_rank(policy: Policy) -> int:
    return 0 if policy.reminder is not None else -1


def change_stage(d: Decision, stage: str, reason: str) -> None:
    """Move the account to ``stage`` (a new cycle when it leaves current), with the
    ``DunningStageChanged`` and the reason; nothing when it is there already."""
    account = d.account
    if stage == account.stage:
        return
    account.sequence += 1
    if account.stage == CURRENT:
        account.cycle += 1
    # Every part is validated already (the stages and segment by the policy or the event
    # that named them, the account id by its first event); the property tests validate it.
    d.out.append(
        built(
            DunningStageChanged,
            {
                "account_id": account.account_id,
                "from_stage": account.stage,
                "to_stage": stage,
                "reason": reason[:1000],
                "segment": d.policy.segment,
                "sequence": account.sequence,
            },
        )
    )
    d.reasons.append(f"stage {account.stage} -> {stage}: {reason}")
    account.stage = stage


def _back_to_current(d: Decision) -> None:
    account, policy = d.account, d.policy
    was = account.stage
    reason = "nothing is overdue any more"
    change_stage(d, CURRENT, reason)
    account.steps_done = []
    account.fees_charged = []
    account.handoff = None
    account.policy_version = None
    if account.credit_hold:
        account.credit_hold = False
        d.out.append(CreditHoldReleased(account_id=account.account_id, reason=reason))
        d.reasons.append("credit hold released: the account is current")
    if policy.thank_you:
        not_before = next_open(d.now, d.zone, d.hours)
        d.out += notices(d, CURRENT, ("email",), "thank_you", not_before=not_before)
        d.reasons.append(f"paid up from {was}: pending steps cancelled, a thank-you requested")


def _check_promise(d: Decision) -> None:
    account, promise = d.account, d.account.promise
    if promise is None:
        return
    currency, amount = promise.currency, promise.amount
    received = account.received_since(currency, promise.since)
    deadline = promise.promised_date + timedelta(days=d.policy.promise_grace_days)
    kept = received >= amount
    if not kept and d.today <= deadline:
        d.wakes.append(opening(deadline + timedelta(days=1), d.zone, d.hours))
        return
    outcome = PromiseToPayKept if kept else PromiseToPayBroken
    d.out.append(
        outcome(
            account_id=account.account_id,
            promise_id=promise.promise_id,
            amount=as_money(amount, currency),
            promised_date=promise.promised_date,
            amount_received=as_money(received, currency),
        )
    )
    if kept:
        d.reasons.append(f"promise {promise.promise_id} kept: the promised amount arrived")
    else:
        d.reasons.append(
            f"promise {promise.promise_id} broken: {from_minor(received, currency)} of "
            f"{from_minor(amount, currency)} {currency} arrived by {deadline.isoformat()}; "
            f"escalation resumes at {account.stage}"
        )
    account.promise = None


def _check_plan(d: Decision) -> None:
    account, plan = d.account, d.account.plan
    if plan is None:
        return
    currency = plan.currency
    received = account.received_since(currency, plan.since)
    total = sum(m for _, m in plan.installments)
    if received >= total or not account.open_invoices():
        d.reasons.append(f"payment plan {plan.plan_id} completed")
        account.plan = None
        return
    grace = timedelta(days=d.policy.installment_grace_days)
    required = 0
    for due, amount in plan.installments:
        if d.today <= due + grace:
            d.wakes.append(opening(due + grace + timedelta(days=1), d.zone, d.hours))
            return
        required += amount
        if received < required:
            d.out.append(
                InstallmentMissed(
                    account_id=account.account_id,
                    plan_id=plan.plan_id,
                    due_date=due,
                    amount_due=as_money(required, currency),
                    amount_received=as_money(received, currency),
                )
            )
            d.reasons.append(
                f"installment of {due.isoformat()} missed on plan {plan.plan_id}: "
                f"{from_minor(received, currency)} of {from_minor(required, currency)} "
                f"{currency} arrived; the ladder resumes at {account.stage}"
            )
            account.plan = None
            return


def _check_pause(d: Decision) -> None:
    pause = d.account.pause
    if pause is None or pause.until is None:
        return
    if pause.until <= d.today:
        d.reasons.append(f"manual pause ended on {pause.until.isoformat()}: escalation resumes")
        d.account.pause = None
    else:
        d.wakes.append(opening(pause.until, d.zone, d.hours))


def _held(d: Decision, stage: str | None) -> bool:
    """Whether business hours or the contact cap hold a contact now (its wake-up set);
    with ``stage``, the reason names it."""
    account, policy = d.account, d.policy
    open_at = next_open(d.now, d.zone, d.hours)
    if open_at > d.now:
        d.wakes.append(open_at)
        if stage is not None:
            d.reasons.append(f"{stage} is due; it waits for business hours ({open_at.isoformat()})")
        return True
    if account.last_contact_at is not None and policy.contact_cap_days:
        free = account.last_contact_at + timedelta(days=policy.contact_cap_days)
        if free > d.now:
            later = next_open(free, d.zone, d.hours)
            d.wakes.append(later)
            if stage is not None:
                d.reasons.append(
                    f"{stage} is due; the contact cap ({policy.contact_cap_days} days) "
                    f"holds it until {later.isoformat()}"
                )
            return True
    return False


def _target(d: Decision, oldest_due: date, days: int) -> Step | None:
    """The furthest step ``days`` past due reaches; the next one's day wakes the account."""
    ladder, ladder_days = d.policy.ladder, d.policy.ladder_days
    # The days increase from step to step (the policy's validation says so).
    reached = bisect_right(ladder_days, days)
    if reached < len(ladder_days):
        at = oldest_due + timedelta(days=ladder_days[reached])
        d.wakes.append(opening(at, d.zone, d.hours))
    return ladder[reached - 1] if reached else None


def below(totals: dict[str, int], threshold: Decimal) -> bool:
    """Whether every total (minor units per currency) is below ``threshold`` (an amount
    in major units), as ``from_minor(minor, currency) < threshold`` says."""
    return all(minor < _in_minor(threshold, currency) for currency, minor in totals.items())


@lru_cache(maxsize=4096)
def _in_minor(threshold: Decimal, currency: str) -> Decimal:
    # from_minor only moves the point: comparing the minor units with the threshold
    # moved the other way is the same comparison, exact, without a Decimal per total.
    return threshold.scaleb(minor_units(currency))


def _done_up_to(policy: Policy, rank: int) -> list[str]:
    # The stages ranked up to ``rank``: a stage's rank is its step's position.
    return list(policy.stages[: rank + 1])


def _ladder(d: Decision, overdue: list[InvoiceState]) -> None:
    account, policy = d.account, d.policy
    chased = [i for i in overdue if account.chased_amount(i) > 0]
    if not chased:
        return  # the whole overdue balance is in dispute: silent until it is resolved
    totals = account.totals(chased, chased=True)
    if below(totals, policy.small_balance):
        return  # below the small-balance threshold: not chased
    oldest = chased[0]
    assert oldest.due_date is not None
    days = (d.today - oldest.due_date).days
    target = _target(d, oldest.due_date, days)
    if target is None:
        return
    target_rank = policy.rank(target.stage)
    if target_rank < policy.rank(account.stage):
        # Paying off the oldest invoice re-anchors the ladder on the next oldest.
        why = f"{oldest.invoice_id}, now the oldest overdue invoice, is {days} days past due"
        change_stage(d, target.stage, why)
        account.steps_done = _done_up_to(policy, target_rank)
        return
    if target.stage in account.steps_done or _held(d, target.stage):
        return
    done = account.steps_done
    skipped = [s for s, rank in policy.ladder_ranks if rank < target_rank and s not in done]
    account.steps_done = _done_up_to(policy, target_rank)
    if target.min_balance is not None and below(totals, target.min_balance):
        d.reasons.append(
            f"{target.stage} skipped: the chased overdue balance is below its minimum "
            f"of {target.min_balance}"
        )
        return
    if account.policy_version is None:
        account.policy_version = policy.version
    why = f"{oldest.invoice_id} is {days} days past due"
    if skipped:
        why += f" (skipped {', '.join(skipped)}: one consolidated notice per step)"
    change_stage(d, target.stage, why)
    _run_step(d, target, chased, totals)


def _charge_fee(d: Decision, step: Step, oldest: InvoiceState) -> Money | None:
    """The step's late fee, once per stage and dunning cycle."""
    if step.fee is None or step.stage in d.account.fees_charged:
        return None
    fee_event = fee(d.account, step, d.today, oldest)
    if fee_event is None:
        return None
    d.account.fees_charged.append(step.stage)
    d.out.append(fee_event)
    charged = fee_event.amount
    d.reasons.append(f"late fee of {charged.amount} {charged.currency}: {fee_event.reason}")
    return charged


def _run_step(d: Decision, step: Step, chased: list[InvoiceState], totals: dict[str, int]) -> None:
    account = d.account
    charged = _charge_fee(d, step, chased[0])
    for action in step.actions:
        if action == "credit_hold" and not account.credit_hold:
            account.credit_hold = True
            d.out.append(
                CreditHoldRequested(
                    account_id=account.account_id,
                    stage=step.stage,
                    overdue_balance=[as_money(m, c) for c, m in totals.items() if m > 0],
                    reason=f"the account reached {step.stage}",
                )
            )
            d.reasons.append("credit hold requested: order systems should stop shipping")
        elif action == "handoff" and account.handoff is None:
            if d.policy.handoff_requires_approval:
                account.handoff = "awaiting_approval"
                d.reasons.append("handoff due: it waits for a person's approval (policy)")
            else:
                account.handoff = "requested"
                d.out.append(handoff(account, d.today, f"the account reached {step.stage}"))
                d.reasons.append("handoff to collections requested")
    then = next_step(d.policy, step)
    d.out += notices(
        d,
        step.stage,
        step.notice_channels,
        step.notice_template,
        not_before=d.now,
        fee=charged,
        then=then,
    )
    if step.notice_channels:
        account.last_contact_at = d.now
        d.reasons.append(f"{step.stage} notice requested by {', '.join(step.notice_channels)}")


def _due_soon(d: Decision, open_: list[InvoiceState], window: timedelta) -> list[InvoiceState]:
    """Open invoices falling due within ``window`` not reminded of yet; when none, the
    day the next one will be wakes the account."""
    account, today = d.account, d.today
    reminded = set(account.reminded)
    account.reminded = [i for i in account.reminded if i in {x.invoice_id for x in open_}]
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
            d.wakes.append(opening(min(later), d.zone, d.hours))
    return due_soon


def _reminder(d: Decision) -> None:
    account, policy = d.account, d.policy
    step = policy.reminder
    open_ = account.open_invoices()
    if account.stage != CURRENT and not open_:
        change_stage(d, CURRENT, "nothing is open any more")
        return
    if step is None or step.days_before_due is None:
        return
    due_soon = _due_soon(d, open_, timedelta(days=step.days_before_due))
    if not due_soon:
        return
    totals = account.totals(due_soon, chased=True)
    if below(totals, policy.small_balance):
        return
    if _held(d, None):
        return
    account.reminded = sorted({*account.reminded, *(i.invoice_id for i in due_soon)})
    if account.stage == CURRENT:
        why = f"{due_soon[0].invoice_id} is due on {due_soon[0].due_date}"
        change_stage(d, step.stage, why)
    d.out += notices(
        d,
        step.stage,
        step.notice_channels,
        step.notice_template,
        not_before=d.now,
        then=after_reminder(policy, step),
        # A second invoice falling due in the same stage is a contact of its own: with
        # the stage's id, notify-svc took it for a redelivery of the first and dropped it.
        moment=sorted(i.invoice_id for i in due_soon),
    )
    account.last_contact_at = d.now
    d.reasons.append(
        f"reminder requested for {', '.join(i.invoice_id for i in due_soon)} "
        f"(due within {step.days_before_due} days)"
    )
