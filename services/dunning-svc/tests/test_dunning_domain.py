"""The pure core: the default ladder day by day, and every pause, cap and rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from dunning_fixtures import (
    ACCOUNT,
    disputed,
    issued,
    kinds,
    paid,
    resolved,
    reversed_,
    settled,
    voided,
)
from pydantic import ValidationError

from dunning_events import (
    CollectionsHandoffRequested,
    Event,
    LateFeeAssessed,
    NotificationRequested,
)
from dunning_svc.core import (
    Account,
    AgreePlan,
    ApproveHandoff,
    DunningConflict,
    DunningRuleError,
    Input,
    Pause,
    RecordPromise,
    Resume,
    SetContacts,
    Tick,
    WriteOff,
    decide,
)
from dunning_svc.policy import Policy, load_yaml, shipped_policy

STANDARD = shipped_policy("standard")
FEE = {"kind": "percent_per_month", "percent": "1.5", "cap": "100.00"}


def at(day: date, hour: int = 10) -> datetime:
    """``day`` at ``hour`` UTC (11:00 or 12:00 in Berlin: within business hours)."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


class Walk:
    """One account walked through inputs, keeping every command."""

    def __init__(self, policy: Policy = STANDARD) -> None:
        self.account = Account("acme", ACCOUNT)
        self.policy = policy
        self.log: list[tuple[date, list[str]]] = []

    def __call__(self, input: Input, now: datetime) -> list[Event]:
        self.account, commands, _ = decide(self.account, input, self.policy, now)
        for command in commands:
            # Some commands are built without validation: each must be what its schema says.
            assert type(command).model_validate_json(command.model_dump_json()) == command
        if commands:
            self.log.append((now.date(), kinds(commands)))
        return commands

    def days(self, first: date, last: date, hour: int = 10) -> None:
        day = first
        while day <= last:
            self(Tick(), at(day, hour))
            day += timedelta(days=1)


def test_a_never_paying_account_walks_the_default_ladder_day_by_day() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3), late_fee=FEE), at(date(2026, 2, 2)))
    walk.days(date(2026, 2, 3), date(2026, 5, 31))
    assert walk.log == [
        # 3 days before the due date is Saturday 28 February: the reminder goes on Monday.
        (date(2026, 3, 2), ["DunningStageChanged", "NotificationRequested:email"]),
        # Due + 1 is 4 March, but the 3-day contact cap holds it until 5 March.
        (date(2026, 3, 5), ["DunningStageChanged", "NotificationRequested:email"]),
        (
            date(2026, 3, 11),
            ["DunningStageChanged", "NotificationRequested:email", "NotificationRequested:sms"],
        ),
        (
            date(2026, 3, 18),
            ["DunningStageChanged", "NotificationRequested:email", "NotificationRequested:task"],
        ),
        (
            date(2026, 4, 2),
            [
                "DunningStageChanged",
                "LateFeeAssessed",
                "CreditHoldRequested",
                "NotificationRequested:email",
            ],
        ),
        (
            date(2026, 4, 17),
            [
                "DunningStageChanged",
                "CollectionsHandoffRequested",
                "NotificationRequested:email",
            ],
        ),
    ]
    assert walk.account.stage == "collections"
    assert walk.account.next_action_at is None


def test_stages_and_notice_contents_on_the_ladder() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3), late_fee=FEE), at(date(2026, 2, 2)))
    walk(issued("INV-2", amount="100.00", due=date(2026, 3, 20)), at(date(2026, 2, 2)))
    commands = walk(Tick(), at(date(2026, 4, 2)))
    fee = next(c for c in commands if isinstance(c, LateFeeAssessed))
    assert (fee.amount.amount, fee.invoice_id) == (Decimal("18.75"), "INV-1")
    assert fee.stage == "final_notice" and fee.assessed_on == date(2026, 4, 2)
    notice = next(c for c in commands if isinstance(c, NotificationRequested))
    # One consolidated notice: both overdue invoices, the fee and the next step.
    assert notice.stage == "final_notice" and notice.template == "final_notice"
    assert [i.invoice_id for i in notice.invoices] == ["INV-1", "INV-2"]
    assert [i.days_past_due for i in notice.invoices] == [30, 13]
    assert notice.total_overdue[0].amount == Decimal("1350.00")
    assert notice.fee == fee.amount
    assert notice.next_step == "handoff to a collection agency in 15 days"
    assert notice.stage_sequence == walk.account.sequence
    # overdue_1 .. overdue_3 were skipped: one notice for the step the oldest balance is at.
    assert walk.account.stage == "final_notice"


def test_a_weekend_step_goes_out_monday_in_business_hours() -> None:
    walk = Walk()
    # Due Friday 6 March, posted on Saturday (too late for a reminder).
    walk(issued("INV-1", due=date(2026, 3, 6)), at(date(2026, 3, 7), 9))
    # Saturday 7 March, 10:00 UTC: overdue_1 is due (1 day past due) but it is the weekend.
    assert walk(Tick(), at(date(2026, 3, 7))) == []
    assert walk.account.next_action_at == datetime(2026, 3, 9, 8, tzinfo=UTC)  # Mon 09:00 CET
    # Monday, 07:00 UTC (08:00 in Berlin): still before opening.
    assert walk(Tick(), at(date(2026, 3, 9), 7)) == []
    assert kinds(walk(Tick(), at(date(2026, 3, 9), 8))) == [
        "DunningStageChanged",
        "NotificationRequested:email",
    ]


def test_business_hours_follow_the_account_time_zone() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3), timezone="America/New_York"), at(date(2026, 3, 3)))
    # 10:00 UTC is 05:00 in New York: before opening, so 09:00 New York (14:00 UTC).
    assert walk(Tick(), at(date(2026, 3, 4))) == []
    assert walk.account.next_action_at == datetime(2026, 3, 4, 14, tzinfo=UTC)


def test_the_contact_cap_holds_a_step_for_the_rolling_window() -> None:
    policy = STANDARD.model_copy(update={"contact_cap_days": 10})
    walk = Walk(policy)
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 4), 7))
    walk.days(date(2026, 3, 4), date(2026, 3, 20))
    # overdue_1 on 4 March; overdue_2 (due + 8 = 11 March) waits until 14 March, a
    # Saturday, so Monday 16 March.
    assert [d for d, _ in walk.log] == [date(2026, 3, 4), date(2026, 3, 16)]


def test_full_payment_returns_to_current_at_once_with_a_thank_you() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 3)))
    walk.days(date(2026, 3, 4), date(2026, 4, 2))
    assert walk.account.stage == "final_notice" and walk.account.credit_hold
    # Paid on a Saturday night: current at once, the thank-you waits for Monday.
    night = datetime(2026, 4, 4, 22, tzinfo=UTC)
    commands = walk(paid("P1", ("INV-1", "1250.00"), at=night), night)
    assert kinds(commands) == [
        "DunningStageChanged",
        "CreditHoldReleased",
        "NotificationRequested:email",
    ]
    thanks = commands[-1]
    assert isinstance(thanks, NotificationRequested)
    assert thanks.template == "thank_you" and thanks.stage == "current"
    assert thanks.not_before == datetime(2026, 4, 6, 7, tzinfo=UTC)  # Mon 09:00 CEST
    assert walk.account.stage == "current" and not walk.account.credit_hold
    # Nothing more goes out: the pending steps are cancelled.
    walk.days(date(2026, 4, 5), date(2026, 5, 30))
    assert walk.log[-1][0] == date(2026, 4, 4)
    assert walk.account.next_action_at is None


def test_a_partial_payment_does_not_restart_the_ladder() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 3)))
    walk.days(date(2026, 3, 4), date(2026, 3, 12))
    assert walk.account.stage == "overdue_2"
    assert walk(paid("P1", ("INV-1", "1000.00")), at(date(2026, 3, 12))) == []
    assert walk.account.stage == "overdue_2"
    walk.days(date(2026, 3, 13), date(2026, 3, 18))
    assert walk.account.stage == "overdue_3"  # on schedule, as if nothing was paid


def test_paying_off_the_oldest_invoice_re_anchors_on_the_next_oldest() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk(issued("INV-2", amount="300.00", due=date(2026, 3, 24)), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 4), date(2026, 3, 26))
    assert walk.account.stage == "overdue_3"
    commands = walk(paid("P1", ("INV-1", "1250.00")), at(date(2026, 3, 26)))
    # INV-2 is 2 days past due: back to overdue_1, with no second overdue_1 notice.
    assert kinds(commands) == ["DunningStageChanged"]
    assert walk.account.stage == "overdue_1"
    walk.days(date(2026, 3, 27), date(2026, 4, 1))
    assert walk.log[-1] == (
        date(2026, 4, 1),
        ["DunningStageChanged", "NotificationRequested:email", "NotificationRequested:sms"],
    )


def test_a_new_overdue_invoice_joins_the_next_notice_instead_of_a_second_ladder() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 4), date(2026, 3, 6))
    walk(issued("INV-2", amount="300.00", due=date(2026, 3, 5)), at(date(2026, 3, 6)))
    walk.days(date(2026, 3, 7), date(2026, 3, 11))
    notices = [d for d, k in walk.log if "NotificationRequested:email" in k]
    assert notices == [date(2026, 3, 4), date(2026, 3, 11)]
    assert walk.account.stage == "overdue_2"


def test_a_wholly_disputed_account_is_silent_until_the_dispute_is_rejected() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 4), date(2026, 3, 5))
    assert walk.account.stage == "overdue_1"
    walk(disputed("INV-1", "1250.00"), at(date(2026, 3, 5)))
    before = len(walk.log)
    walk.days(date(2026, 3, 6), date(2026, 3, 25))
    assert len(walk.log) == before
    assert walk.account.stage == "overdue_1"
    # Rejected: it resumes where it left off, at the step the oldest balance is at now.
    commands = walk(resolved("INV-1", "rejected", "1250.00"), at(date(2026, 3, 26)))
    assert kinds(commands)[0] == "DunningStageChanged"
    assert walk.account.stage == "overdue_3"


def test_an_upheld_dispute_credits_and_a_partly_disputed_balance_is_chased() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk(disputed("INV-1", "250.00"), at(date(2026, 3, 1)))
    commands = walk(Tick(), at(date(2026, 3, 4)))
    notice = commands[-1]
    assert isinstance(notice, NotificationRequested)
    assert walk.account.stage == "overdue_1"
    walk(resolved("INV-1", "upheld", "0.00", credited="1250.00"), at(date(2026, 3, 5)))
    assert walk.account.stage == "current"


def test_a_kept_promise_ends_the_pause() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 4), date(2026, 3, 5))
    commands = walk(
        RecordPromise("PTP-1", "EUR", 50000, date(2026, 3, 20), "collector:jo"),
        at(date(2026, 3, 5)),
    )
    assert kinds(commands) == ["PromiseToPayRecorded"]
    assert walk.account.paused
    walk.days(date(2026, 3, 6), date(2026, 3, 16))
    assert walk.log[-1][1] == ["PromiseToPayRecorded"]  # nothing sent while paused
    commands = walk(
        paid("P1", ("INV-1", "500.00"), at=at(date(2026, 3, 17))), at(date(2026, 3, 17))
    )
    assert kinds(commands)[0] == "PromiseToPayKept"
    assert not walk.account.paused
    # Escalation resumes at once at the step the oldest balance is at (14 days past due).
    assert walk.account.stage == "overdue_2"


def test_a_broken_promise_resumes_at_the_stage_it_left() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 4), date(2026, 3, 5))
    walk(RecordPromise("PTP-1", "EUR", 50000, date(2026, 3, 10), "api"), at(date(2026, 3, 5)))
    walk(paid("P1", ("INV-1", "100.00"), at=at(date(2026, 3, 9))), at(date(2026, 3, 9)))
    walk.days(date(2026, 3, 6), date(2026, 3, 12))  # promised date + 2 days' grace
    assert walk.account.stage == "overdue_1" and walk.account.paused
    commands = walk(Tick(), at(date(2026, 3, 13)))
    assert kinds(commands)[:2] == ["PromiseToPayBroken", "DunningStageChanged"]
    assert commands[0].amount_received.amount == Decimal("100.00")  # type: ignore[attr-defined]
    assert walk.account.stage == "overdue_2"


def test_a_payment_plan_replaces_the_ladder_until_an_installment_is_missed() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 4), date(2026, 3, 5))
    plan = AgreePlan(
        "PLAN-1", "EUR", ((date(2026, 3, 20), 40000), (date(2026, 4, 20), 85000)), "api"
    )
    assert kinds(walk(plan, at(date(2026, 3, 5)))) == ["PaymentPlanAgreed"]
    walk(paid("P1", ("INV-1", "400.00"), at=at(date(2026, 3, 19))), at(date(2026, 3, 19)))
    walk.days(date(2026, 3, 6), date(2026, 4, 23))  # second installment due 20 April + 3 days
    assert walk.log[-1][1] == ["PaymentPlanAgreed"]
    commands = walk(Tick(), at(date(2026, 4, 24)))
    assert kinds(commands)[0] == "InstallmentMissed"
    assert walk.account.plan is None
    assert walk.account.stage == "collections"  # the ladder resumes, 52 days past due


def test_a_manual_pause_until_a_date_and_resume() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk(Pause("customer on holiday", date(2026, 3, 16), "jo"), at(date(2026, 3, 2)))
    walk.days(date(2026, 3, 2), date(2026, 3, 15))
    assert walk.log == []
    assert walk.account.next_action_at == datetime(2026, 3, 16, 8, tzinfo=UTC)
    walk(Tick(), at(date(2026, 3, 16)))
    assert walk.account.stage == "overdue_2" and not walk.account.paused
    walk(Pause("talking to them", None, "jo"), at(date(2026, 3, 17)))
    walk.days(date(2026, 3, 17), date(2026, 4, 30))
    assert walk.account.stage == "overdue_2"
    walk(Resume("jo"), at(date(2026, 5, 1)))
    assert walk.account.stage == "collections"
    with pytest.raises(DunningConflict):
        walk(Resume("jo"), at(date(2026, 5, 1)))


def test_small_balances_are_not_chased() -> None:
    walk = Walk()
    walk(issued("INV-1", amount="4.99", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 1), date(2026, 4, 30))
    assert walk.log == [] and walk.account.stage == "current"


def test_handoff_only_above_the_minimum_balance() -> None:
    walk = Walk()
    walk(issued("INV-1", amount="300.00", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 1), date(2026, 5, 30))
    assert walk.account.stage == "final_notice"
    assert not any("CollectionsHandoffRequested" in k for _, k in walk.log)


def test_a_strategic_handoff_waits_for_approval() -> None:
    walk = Walk(shipped_policy("strategic"))
    walk(
        issued("INV-1", amount="5000.00", due=date(2026, 1, 5), segment="strategic"),
        at(date(2026, 1, 1)),
    )
    walk.days(date(2026, 1, 1), date(2026, 4, 30))
    assert walk.account.stage == "collections"
    assert walk.account.handoff == "awaiting_approval"
    assert not any("CollectionsHandoffRequested" in k for _, k in walk.log)
    commands = walk(ApproveHandoff("manager:kim"), at(date(2026, 5, 4)))
    assert isinstance(commands[0], CollectionsHandoffRequested)
    assert commands[0].oldest_days_past_due == 119
    with pytest.raises(DunningConflict):
        walk(ApproveHandoff("manager:kim"), at(date(2026, 5, 4)))


def test_write_off_ends_everything() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 1), date(2026, 4, 3))
    commands = walk(WriteOff("insolvent", "cfo"), at(date(2026, 4, 3)))
    assert kinds(commands) == ["AccountWrittenOff", "CreditHoldReleased"]
    walk.days(date(2026, 4, 4), date(2026, 6, 30))
    walk(issued("INV-9", due=date(2026, 5, 1)), at(date(2026, 5, 1)))
    assert walk.log[-1][0] == date(2026, 4, 3)
    with pytest.raises(DunningConflict):
        walk(Pause("x", None, "jo"), at(date(2026, 7, 1)))


def test_the_escalation_contact_gets_a_copy_from_overdue_3() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    boss = {"name": "Finance Director", "email": "fd@acme.example"}
    walk(SetContacts(None, boss, "jo"), at(date(2026, 3, 1)))
    notices: list[NotificationRequested] = []
    day = date(2026, 3, 2)
    while day <= date(2026, 3, 20):
        notices += [c for c in walk(Tick(), at(day)) if isinstance(c, NotificationRequested)]
        day += timedelta(days=1)
    by_stage = {n.stage: n for n in notices if n.channel == "email"}
    assert by_stage["overdue_2"].cc == []
    assert [c.email for c in by_stage["overdue_3"].cc] == ["fd@acme.example"]
    assert by_stage["overdue_3"].recipient.email == "ap@acme.example"


def test_manual_actions_refused_by_the_rules() -> None:
    walk = Walk()
    now = at(date(2026, 3, 5))
    with pytest.raises(DunningConflict):  # nothing open yet
        walk(RecordPromise("PTP-1", "EUR", 100, date(2026, 3, 10), "api"), now)
    walk(issued("INV-1", due=date(2026, 3, 3)), now)
    with pytest.raises(DunningRuleError) as info:
        walk(RecordPromise("PTP-1", "EUR", 100, date(2026, 3, 1), "api"), now)
    assert info.value.field == "promised_date"
    with pytest.raises(DunningRuleError):
        walk(RecordPromise("PTP-1", "EUR", 100, date(2026, 9, 1), "api"), now)
    walk(RecordPromise("PTP-1", "EUR", 100, date(2026, 3, 10), "api"), now)
    with pytest.raises(DunningConflict):
        walk(RecordPromise("PTP-2", "EUR", 100, date(2026, 3, 10), "api"), now)
    with pytest.raises(DunningRuleError) as info:
        walk(Pause("x", date(2026, 3, 5), "jo"), now)
    assert info.value.field == "until"


def test_a_payment_before_its_invoice_and_a_reversal_before_its_payment() -> None:
    walk = Walk()
    walk(paid("P1", ("INV-1", "1250.00")), at(date(2026, 3, 1)))
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 1), date(2026, 3, 20))
    assert walk.log == []
    walk(reversed_("P2", ("INV-2", "10.00")), at(date(2026, 3, 20)))
    walk(paid("P2", ("INV-2", "10.00")), at(date(2026, 3, 20)))
    walk(issued("INV-2", amount="10.00", due=date(2026, 3, 30)), at(date(2026, 3, 20)))
    account = walk.account
    assert account.balance(account.invoices["INV-2"]) == 1000


def test_settled_and_voided_invoices_are_not_chased() -> None:
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk(issued("INV-2", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk(settled("INV-1"), at(date(2026, 3, 1)))
    walk(voided("INV-2"), at(date(2026, 3, 1)))
    walk.days(date(2026, 3, 1), date(2026, 4, 30))
    assert walk.log == []


def test_balances_as_of_a_past_day_add_back_what_was_paid_after_it() -> None:
    walk = Walk()
    walk(issued("INV-1", amount="100.00", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk(issued("INV-2", amount="50.00", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk(issued("INV-3", amount="70.00", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    walk(issued("INV-4", amount="10.00", due=date(2026, 3, 3)), at(date(2026, 3, 1)))
    # 23:30 UTC on the 9th is already the 10th in Berlin, the account's zone.
    walk(
        paid("P1", ("INV-1", "60.00"), at=datetime(2026, 3, 9, 23, 30, tzinfo=UTC)),
        at(date(2026, 3, 10)),
    )
    walk(paid("P2", ("INV-1", "40.00"), at=at(date(2026, 3, 20))), at(date(2026, 3, 20)))
    walk(settled("INV-1"), at(date(2026, 3, 20)))
    walk(paid("P3", ("INV-2", "50.00"), at=at(date(2026, 3, 5))), at(date(2026, 3, 5)))
    walk(reversed_("P3", ("INV-2", "50.00")), at(date(2026, 3, 25)))
    walk(voided("INV-3"), at(date(2026, 3, 15)))
    account, invoices = walk.account, walk.account.invoices
    on = account.balance_on
    assert [on(invoices["INV-1"], d) for d in (date(2026, 3, 9), date(2026, 3, 10))] == [
        10000,
        4000,
    ]
    assert on(invoices["INV-1"], date(2026, 3, 20)) == 0 == account.balance(invoices["INV-1"])
    # What the events give no date for counts from the start: the reversal, the void.
    assert on(invoices["INV-2"], date(2026, 3, 6)) == 5000
    assert on(invoices["INV-3"], date(2026, 3, 10)) == 0
    # Not issued yet on the day: nothing owed on it then.
    assert (
        on(invoices["INV-4"], date(2026, 1, 31)) == 0
        and on(invoices["INV-4"], date(2026, 2, 1)) == 1000
    )


# -- policies -----------------------------------------------------------------------


def test_the_shipped_policies_follow_design_md() -> None:
    ladder = [(s.stage, s.days_before_due, s.days_past_due) for s in STANDARD.steps]
    assert ladder == [
        ("reminder", 3, None),
        ("overdue_1", None, 1),
        ("overdue_2", None, 8),
        ("overdue_3", None, 15),
        ("final_notice", None, 30),
        ("collections", None, 45),
    ]
    strategic, high_risk = shipped_policy("strategic"), shipped_policy("high_risk")
    assert strategic.handoff_requires_approval
    assert strategic.ladder[-1].days_past_due > STANDARD.ladder[-1].days_past_due  # type: ignore[operator]
    assert high_risk.ladder[-1].days_past_due < STANDARD.ladder[-1].days_past_due  # type: ignore[operator]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": []}, "at least 1"),
        ({"contact_cap_days": -1}, "greater than or equal"),
        (
            {
                "steps": [
                    {"stage": "a", "days_past_due": 5, "channels": ["email"]},
                    {"stage": "b", "days_past_due": 5, "channels": ["email"]},
                ]
            },
            "increase",
        ),
        (
            {
                "steps": [
                    {"stage": "a", "days_past_due": 5, "channels": ["email"]},
                    {"stage": "a", "days_past_due": 6, "channels": ["email"]},
                ]
            },
            "own stage",
        ),
        ({"steps": [{"stage": "a", "days_past_due": 5}]}, "channel or action"),
        (
            {
                "steps": [
                    {"stage": "a", "days_past_due": 5, "days_before_due": 3, "channels": ["email"]}
                ]
            },
            "exactly one",
        ),
        ({"steps": [{"stage": "current", "days_past_due": 5, "channels": ["email"]}]}, "current"),
        ({"steps": [{"stage": "a", "days_past_due": 5, "channels": ["fax"]}]}, "email"),
        ({"business_hours": {"start": "18:00", "end": "09:00"}}, "before end"),
    ],
)
def test_an_invalid_policy_says_what_is_wrong(change: dict[str, object], message: str) -> None:
    data = STANDARD.model_dump(mode="json")
    data.update(change)
    if "steps" in change:
        data["escalation_contact"] = {"from_stage": "a"}
    with pytest.raises(ValidationError) as info:
        Policy.model_validate(data)
    assert message in str(info.value)


def test_a_policy_round_trips_through_yaml() -> None:
    import yaml

    text = yaml.safe_dump(STANDARD.model_dump(mode="json"))
    assert load_yaml(text) == STANDARD


_EMAIL = {"channels": ["email"]}


@pytest.mark.parametrize(
    ("steps", "contact_from", "field"),
    [
        (
            [
                {"stage": "a", "days_past_due": 5, **_EMAIL},
                {"stage": "b", "days_past_due": 5, **_EMAIL},
            ],
            "a",
            "steps[1].days_past_due",
        ),
        (
            [
                {"stage": "a", "days_past_due": 5, **_EMAIL},
                {"stage": "a", "days_past_due": 6, **_EMAIL},
            ],
            "a",
            "steps[1].stage",
        ),
        (
            [
                {"stage": "a", "days_past_due": 5, **_EMAIL},
                {"stage": "r", "days_before_due": 3, **_EMAIL},
            ],
            "a",
            "steps[1].days_before_due",
        ),
        (
            [
                {"stage": "a", "days_past_due": 5, "actions": ["handoff"]},
                {"stage": "b", "days_past_due": 9, **_EMAIL},
            ],
            "a",
            "steps[0].actions",
        ),
        ([{"stage": "r", "days_before_due": 3, **_EMAIL}], "r", "steps"),
        ([{"stage": "a", "days_past_due": 5, **_EMAIL}], "zz", "escalation_contact.from_stage"),
    ],
)
def test_a_refused_ladder_names_the_step_and_field(
    steps: list[dict[str, object]], contact_from: str, field: str
) -> None:
    from dunning_runtime.problems import validation_errors

    data = STANDARD.model_dump(mode="json")
    data.update(steps=steps, escalation_contact={"from_stage": contact_from})
    with pytest.raises(ValidationError) as info:
        Policy.model_validate(data)
    assert [e["field"] for e in validation_errors(info.value.errors())] == [field]


def test_a_second_invoice_falling_due_in_the_reminder_stage_is_a_notice_of_its_own() -> None:
    """Two reminders in one stage are two contacts: each has its own id, which is
    notify-svc's idempotency key. With the stage's id, the second was taken for a
    redelivery of the first and never sent (the fault suite's oracle found it)."""
    walk = Walk()
    walk(issued("INV-1", due=date(2026, 3, 10)), at(date(2026, 2, 2)))
    walk(issued("INV-2", amount="100.00", due=date(2026, 3, 20)), at(date(2026, 2, 2)))
    reminders: list[NotificationRequested] = []
    day = date(2026, 3, 3)
    while day <= date(2026, 3, 19):
        if day == date(2026, 3, 10):  # INV-1 is paid on its due date; INV-2 stays open
            walk(paid("PAY-1", ("INV-1", "1250.00")), at(day, 9))
            walk(settled("INV-1"), at(day, 9))
        reminders += [c for c in walk(Tick(), at(day)) if isinstance(c, NotificationRequested)]
        day += timedelta(days=1)
    assert [n.stage for n in reminders] == ["reminder", "reminder"]
    assert reminders[0].stage_sequence == reminders[1].stage_sequence
    assert reminders[0].notification_id != reminders[1].notification_id
    again = Walk()
    again(issued("INV-1", due=date(2026, 3, 10)), at(date(2026, 2, 2)))
    same = again(Tick(), at(date(2026, 3, 9)))
    # Deterministic: the same inputs give the same id (a redelivery is recognised).
    assert [c.notification_id for c in same if isinstance(c, NotificationRequested)] == [
        reminders[0].notification_id
    ]
