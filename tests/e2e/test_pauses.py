"""What pauses the ladder end to end: disputes, promises to pay, payment plans.

One platform for the module; the two outcomes of each run side by side, on
their own accounts, over the same days.
"""

from __future__ import annotations

from tests.e2e.desk import Desk
from tests.support.platform import Platform
from tests.support.smtp import MailServer


def test_dispute_upheld_credits_and_rejected_resumes(platform: Platform, mail: MailServer) -> None:
    desk = Desk(platform, mail)
    for account in ("upheld", "rejected"):
        desk.issue(account, f"{account}-1", "800.00")
    desk.advance_to(1)
    for account in ("upheld", "rejected"):
        assert desk.stage(account) == "overdue_1"
        desk.act(desk.invoices, f"/v1/invoices/{account}-1/dispute", {"reason": "goods damaged"})
        assert desk.invoice(f"{account}-1")["disputed"] is True
        assert desk.account(account)["disputed_balance"] == [
            {"currency": "EUR", "amount": "800.00"}
        ]

    # The whole overdue balance is disputed: overdue_2's day passes without a notice.
    desk.advance_to(8)
    for account in ("upheld", "rejected"):
        assert desk.templates(account) == ["overdue_1"]

    desk.act(desk.invoices, "/v1/invoices/upheld-1/dispute/resolve", {"resolution": "upheld"})
    desk.act(desk.invoices, "/v1/invoices/rejected-1/dispute/resolve", {"resolution": "rejected"})
    desk.advance_to(11, hour=11)
    upheld = desk.account("upheld")
    assert upheld["stage"] == "current"
    assert upheld["open_balance"] == []
    assert desk.invoice("upheld-1")["balance"] == "0.00"
    # Rejected: the ladder resumes at the step the oldest balance has reached by now.
    rejected = desk.account("rejected")
    assert rejected["stage"] == "overdue_2"
    assert rejected["overdue_balance"] == [{"currency": "EUR", "amount": "800.00"}]
    assert desk.templates("rejected") == ["overdue_1", "overdue_2"]
    assert "overdue_2" not in desk.templates("upheld")
    for account in ("upheld", "rejected"):
        desk.check_mails(account)


def test_promise_kept_ends_the_pause_and_broken_resumes_the_ladder(
    platform: Platform, mail: MailServer
) -> None:
    desk = Desk(platform, mail)
    for account in ("kept", "broken"):
        desk.issue(account, f"{account}-1", "1500.00")
    desk.advance_to(1)
    for account in ("kept", "broken"):
        desk.act(
            desk.dunning,
            f"/v1/accounts/{account}/promise-to-pay",
            {"amount": "1500.00", "currency": "EUR", "promised_date": desk.day(10).isoformat()},
        )
        assert desk.account(account)["paused"] is True

    # Paused: overdue_2's day passes in silence for both.
    desk.advance_to(8)
    for account in ("kept", "broken"):
        assert desk.stage(account) == "overdue_1"
        assert desk.templates(account) == ["overdue_1"]

    desk.advance_to(9)
    desk.pay("kept", "kept-p1", "1500.00")
    assert desk.said("kept", "kept: the promised amount arrived")
    # The promised date plus two days of grace passes without the money.
    desk.advance_to(15)
    kept = desk.account("kept")
    assert (kept["stage"], kept["paused"], kept["open_balance"]) == ("current", False, [])
    broken = desk.account("broken")
    assert broken["paused"] is False
    assert broken["stage"] == "overdue_3"
    assert desk.said("broken", "promise")
    assert any("broken" in e["summary"] for e in desk.timeline("broken"))
    assert desk.templates("broken")[-1] == "overdue_3"
    for account in ("kept", "broken"):
        desk.check_mails(account)


def test_payment_plan_met_completes_and_missed_resumes_the_ladder(
    platform: Platform, mail: MailServer
) -> None:
    desk = Desk(platform, mail)
    for account in ("met", "missed"):
        desk.issue(account, f"{account}-1", "1000.00")
    desk.advance_to(1)
    for account in ("met", "missed"):
        desk.act(
            desk.dunning,
            f"/v1/accounts/{account}/payment-plan",
            {
                "currency": "EUR",
                "installments": [
                    {"due_date": desk.day(7).isoformat(), "amount": "500.00"},
                    {"due_date": desk.day(21).isoformat(), "amount": "500.00"},
                ],
            },
        )
        assert desk.account(account)["plan"] is not None

    desk.advance_to(6)
    for account in ("met", "missed"):
        desk.pay(account, f"{account}-p1", "500.00")
    # Both met the first installment: no overdue_2 or overdue_3 while the plan runs.
    desk.advance_to(15)
    for account in ("met", "missed"):
        assert desk.stage(account) == "overdue_1"
        assert desk.templates(account) == ["overdue_1"]

    desk.advance_to(20)
    desk.pay("met", "met-p2", "500.00")
    # The second installment's date plus three days of grace passes.
    desk.advance_to(25)
    met = desk.account("met")
    assert (met["stage"], met["plan"], met["open_balance"]) == ("current", None, [])
    assert desk.said("met", "completed")
    missed = desk.account("missed")
    assert missed["plan"] is None
    assert any("missed on plan" in e["summary"] for e in desk.timeline("missed"))
    assert missed["stage"] == "overdue_3"
    assert missed["overdue_balance"] == [{"currency": "EUR", "amount": "500.00"}]
    assert desk.templates("missed")[-1] == "overdue_3"
    for account in ("met", "missed"):
        desk.check_mails(account)
