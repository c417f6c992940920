"""What other services publish beyond invoices and payments moves accounts too: the early-
payment discount and later credit from payment-svc, a collector's call and a suppressed
notice from notify-svc."""

from __future__ import annotations

from datetime import UTC, date, datetime

from dunning_fixtures import ACCOUNT, eur, issued, kinds, reversed_

from dunning_events import (
    Allocation,
    CollectorTaskCompleted,
    CreditApplied,
    NotificationSuppressed,
    PaymentReceived,
)
from dunning_svc.core import Account, Tick, decide
from dunning_svc.policy import shipped_policy

STANDARD = shipped_policy("standard")


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def call(outcome: str, **promise: object) -> CollectorTaskCompleted:
    return CollectorTaskCompleted.model_validate(
        {
            "account_id": ACCOUNT,
            "task_id": "TASK-1",
            "notification_id": "NTF-1",
            "outcome": outcome,
            "note": "spoke to Dana",
            "completed_by": "collector:jo",
            "completed_at": at(date(2026, 3, 20)),
            **promise,
        }
    )


def overdue_account() -> Account:
    """ACME with INV-1 (1,250.00 EUR, due 3 March) 17 days past due, at overdue_3."""
    account = Account("acme", ACCOUNT)
    account, _, _ = decide(
        account, issued("INV-1", due=date(2026, 3, 3)), STANDARD, at(date(2026, 3, 1))
    )
    for day in range(4, 21):
        account, _, _ = decide(account, Tick(), STANDARD, at(date(2026, 3, day)))
    assert account.stage == "overdue_3"
    return account


def test_a_discount_taken_settles_the_invoice_as_money_would() -> None:
    account = overdue_account()
    payment = PaymentReceived(
        account_id=ACCOUNT,
        payment_id="P1",
        amount=eur("1225.00"),
        received_at=at(date(2026, 3, 20)),
        method="wire",
        allocations=[Allocation(invoice_id="INV-1", amount=eur("1225.00"), discount=eur("25.00"))],
        unapplied=eur("0.00"),
    )
    account, commands, _ = decide(account, payment, STANDARD, at(date(2026, 3, 20)))
    assert account.stage == "current"
    assert "DunningStageChanged" in kinds(commands)


def test_credit_applied_later_pays_and_its_reversal_reopens() -> None:
    account = overdue_account()
    credit = CreditApplied(
        account_id=ACCOUNT,
        payment_id="P0",
        invoice_id="INV-1",
        amount=eur("1250.00"),
        credit_left=eur("0.00"),
        applied_at=at(date(2026, 3, 20)),
    )
    account, _, reasons = decide(account, credit, STANDARD, at(date(2026, 3, 20)))
    assert account.stage == "current"
    assert any("credit of payment P0 applied to INV-1" in r for r in reasons)
    account, _, _ = decide(
        account, reversed_("P0", ("INV-1", "1250.00")), STANDARD, at(date(2026, 3, 21))
    )
    invoice = account.invoices["INV-1"]
    assert invoice.balance(account.reversed_payments) == 125000  # minor units: 1,250.00
    # 21 March is a Saturday: the ladder takes it up again on Monday, in business hours.
    account, commands, _ = decide(account, Tick(), STANDARD, at(date(2026, 3, 23)))
    assert account.stage != "current"
    assert "NotificationRequested:email" in kinds(commands)


def test_a_promise_made_on_a_call_pauses_escalation() -> None:
    account = overdue_account()
    outcome = call("promised", promised_amount=eur("1250.00"), promised_date=date(2026, 3, 31))
    account, commands, reasons = decide(account, outcome, STANDARD, at(date(2026, 3, 20)))
    assert kinds(commands) == ["PromiseToPayRecorded"]
    assert commands[0].recorded_by == "collector:jo"
    assert account.paused
    assert any("call task TASK-1 completed by collector:jo: promised" in r for r in reasons)


def test_a_promise_the_rules_refuse_stays_on_the_timeline_only() -> None:
    account = overdue_account()
    outcome = call("promised", promised_amount=eur("1250.00"), promised_date=date(2026, 3, 1))
    account, commands, reasons = decide(account, outcome, STANDARD, at(date(2026, 3, 20)))
    assert commands == []
    assert not account.paused
    assert any("was not recorded" in r and "past" in r for r in reasons)


def test_other_call_outcomes_and_suppressed_notices_are_recorded_and_change_nothing() -> None:
    account = overdue_account()
    for event in (
        call("no_answer"),
        NotificationSuppressed(
            account_id=ACCOUNT,
            notification_id="NTF-2",
            channel="email",
            reason="opted_out",
            detail="ap@acme.example opted out of email",
        ),
    ):
        after, commands, reasons = decide(account, event, STANDARD, at(date(2026, 3, 20)))
        assert commands == []
        assert after.stage == account.stage
        assert not after.paused
        assert reasons and "does not concern" not in reasons[0]
