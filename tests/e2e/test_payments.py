"""Payments end to end: on time, in part, before the invoice, reversed; and a void.

One platform for the module; each scenario has its own accounts and due date D.
"""

from __future__ import annotations

from tests.e2e.desk import Desk
from tests.support.platform import Platform
from tests.support.smtp import MailServer


def test_on_time_payment_gets_a_reminder_and_nothing_after(
    platform: Platform, mail: MailServer
) -> None:
    desk = Desk(platform, mail)
    desk.issue("ontime", "ontime-1", "1200.00")
    desk.advance_to(-3)
    assert desk.stage("ontime") == "reminder"
    assert [m.subject for m in desk.check_mails("ontime")] == [
        "Friendly reminder: 1 invoice due soon"
    ]

    desk.advance_to(-1)
    desk.pay("ontime", "ontime-p1", "1200.00")
    assert desk.invoice("ontime-1")["status"] == "paid"
    desk.advance_to(8)
    account = desk.account("ontime")
    assert account["stage"] == "current"
    assert account["open_balance"] == []
    assert "overdue_1" not in desk.templates("ontime")
    assert desk.templates("ontime")[0] == "reminder"
    desk.check_mails("ontime")


def test_partial_payment_keeps_the_ladder_then_full_payment_thanks(
    platform: Platform, mail: MailServer
) -> None:
    desk = Desk(platform, mail)
    desk.issue("partial", "partial-1", "1000.00")
    desk.advance_to(1)
    assert desk.stage("partial") == "overdue_1"

    desk.pay("partial", "partial-p1", "400.00")
    invoice = desk.invoice("partial-1")
    assert (invoice["status"], invoice["balance"]) == ("partially_paid", "600.00")
    account = desk.account("partial")
    assert account["stage"] == "overdue_1"
    assert account["overdue_balance"] == [{"currency": "EUR", "amount": "600.00"}]

    desk.advance_to(8)
    assert desk.stage("partial") == "overdue_2"
    # Posted after its reminder was due: only the step reached (overdue_1) went out.
    assert desk.templates("partial") == ["overdue_1", "overdue_2"]
    assert [n["channel"] for n in desk.notices("partial") if n["stage"] == "overdue_2"] == [
        "email",
        "sms",
    ]
    overdue_2 = desk.mails("partial")[-1]
    assert "600.00" in overdue_2.body

    desk.pay("partial", "partial-p2", "600.00")
    assert desk.stage("partial") == "current"
    desk.advance_to(9)
    assert desk.templates("partial")[-1] == "thank_you"
    assert desk.invoice("partial-1")["status"] == "paid"
    desk.check_mails("partial")


def test_payment_before_its_invoice_pays_it(platform: Platform, mail: MailServer) -> None:
    desk = Desk(platform, mail)
    # The ERP posts the payments first: one unallocated (credit on the account), one
    # naming an invoice payment-svc does not know yet (held for it) ...
    desk.pay("early", "early-p1", "750.00")
    desk.pay(
        "early", "early-p2", "300.00", allocations=[{"invoice_id": "early-2", "amount": "300.00"}]
    )
    # ... and both pay their invoices once issued.
    desk.issue("early", "early-2", "300.00")
    desk.issue("early", "early-1", "750.00", due=1)
    platform.settle()
    assert desk.invoice("early-1")["status"] == "paid"
    assert desk.invoice("early-2")["status"] == "paid"
    desk.advance_to(3)
    account = desk.account("early")
    assert account["stage"] == "current"
    assert account["open_balance"] == []
    assert desk.templates("early") == []
    assert desk.check_mails("early") == []


def test_reversed_payment_reopens_the_invoice_and_the_ladder(
    platform: Platform, mail: MailServer
) -> None:
    desk = Desk(platform, mail)
    desk.issue("bounce", "bounce-1", "900.00")
    desk.advance_to(-2)
    desk.pay("bounce", "bounce-p1", "900.00")
    desk.advance_to(1)
    assert desk.invoice("bounce-1")["status"] == "paid"
    assert desk.stage("bounce") == "current"

    desk.act(desk.payments, "/v1/payments/bounce-p1/reverse", {"reason": "bounced"})
    invoice = desk.invoice("bounce-1")
    assert (invoice["status"], invoice["balance"]) == ("open", "900.00")
    assert desk.account("bounce")["overdue_balance"] == [{"currency": "EUR", "amount": "900.00"}]
    assert desk.said("bounce", "payment bounce-p1 reversed")

    desk.advance_to(2)
    assert desk.stage("bounce") == "overdue_1"
    assert desk.templates("bounce") == ["reminder", "overdue_1"]
    desk.check_mails("bounce")


def test_void_invoice_is_never_chased(platform: Platform, mail: MailServer) -> None:
    desk = Desk(platform, mail)
    desk.issue("void", "void-1", "300.00")
    desk.issue("void", "void-2", "200.00")
    desk.act(desk.invoices, "/v1/invoices/void-1/void", {"reason": "issued twice"})
    assert desk.invoice("void-1")["status"] == "void"
    desk.advance_to(1)
    account = desk.account("void")
    assert account["stage"] == "overdue_1"
    assert account["overdue_balance"] == [{"currency": "EUR", "amount": "200.00"}]
    (overdue_1,) = [m for m in desk.check_mails("void") if "overdue" in m.subject.lower()]
    assert "void-2" in overdue_1.body
    assert "void-1" not in overdue_1.body
