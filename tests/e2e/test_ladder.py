"""The whole ladder end to end: a late fee invoice, collections, a write-off;
tenant isolation; and a restart in the middle that changes nothing."""

from __future__ import annotations

from typing import Any

from tests.e2e.desk import Desk
from tests.support.platform import Platform
from tests.support.smtp import MailServer

#: The standard ladder's days (a Thursday due date puts each on a weekday; the final
#: notice's Saturday is the following Monday, D+32).
LADDER = [(-3, "reminder"), (1, "overdue_1"), (8, "overdue_2"), (15, "overdue_3")]


def test_final_notice_charges_a_late_fee_then_collections_then_write_off(
    platform: Platform, mail: MailServer
) -> None:
    desk = Desk(platform, mail)
    desk.issue(
        "deadbeat",
        "deadbeat-1",
        "2000.00",
        late_fee={"kind": "flat", "amount": "25.00"},
    )
    for day, stage in LADDER:
        desk.advance_to(day)
        assert desk.stage("deadbeat") == stage
    tasks = [n for n in desk.notices("deadbeat") if n["channel"] == "task"]
    assert [t["stage"] for t in tasks] == ["overdue_3"]

    desk.advance_to(32)
    account = desk.account("deadbeat")
    assert account["stage"] == "final_notice"
    assert account["credit_hold"] is True
    # invoice-svc turned the fee into an invoice of its own, chased like any other.
    fees = [
        i
        for i in desk.invoices.get("/v1/invoices", params={"account_id": "deadbeat"}).json()[
            "items"
        ]
        if i["invoice_id"] != "deadbeat-1"
    ]
    assert [(f["amount_due"], f["currency"], f["metadata"].get("kind")) for f in fees] == [
        ("25.00", "EUR", "fee")
    ]
    assert account["open_balance"] == [{"currency": "EUR", "amount": "2025.00"}]
    final = desk.mails("deadbeat")[-1]
    assert "25.00" in final.body

    desk.advance_to(46)
    account = desk.account("deadbeat")
    assert account["stage"] == "collections"
    assert account["handoff"] is not None
    assert desk.templates("deadbeat") == [
        "reminder",
        "overdue_1",
        "overdue_2",
        "overdue_3",
        "final_notice",
        "collections",
    ]

    desk.act(desk.dunning, "/v1/accounts/deadbeat/write-off", {"reason": "insolvent"})
    assert desk.account("deadbeat")["written_off"] is True
    sent = len(desk.mails("deadbeat"))
    desk.advance_to(80)
    assert len(desk.mails("deadbeat")) == sent
    assert desk.said("deadbeat", "written off")
    desk.check_mails("deadbeat")


def test_tenants_never_see_each_other(platform: Platform, mail: MailServer) -> None:
    acme = Desk(platform, mail, "acme")
    globex = Desk(platform, mail, "globex")
    acme.issue("twin", "twin-1", "640.00")
    acme.advance_to(1)

    # globex's key finds nothing of acme's: not the invoice, the account or its notices.
    assert globex.invoices.get("/v1/invoices/twin-1").status_code == 404
    assert globex.dunning.get("/v1/accounts/twin").status_code == 404
    assert globex.dunning.get("/v1/accounts/twin/timeline").status_code == 404
    assert globex.notices("twin") == []
    assert (
        globex.payments.post("/v1/payments/any/reverse", json={"reason": "probe"}).status_code
        == 404
    )
    for notice in acme.notices("twin"):
        assert (
            globex.notify.get(f"/v1/notifications/{notice['notification_id']}").status_code == 404
        )

    # The same account id in globex is another account with its own contact.
    globex_contact = "ap@twin.globex.example"
    body: dict[str, Any] = {
        "invoice_id": "twin-1",
        "account_id": "twin",
        "account_name": "Twin of Globex",
        "contact": {"name": "Accounts Payable", "email": globex_contact},
        "currency": "EUR",
        "amount_due": "99.00",
        "issue_date": acme.day(-20).isoformat(),
        "due_date": acme.day(10).isoformat(),
    }
    assert globex.invoices.post("/v1/invoices", json=body).status_code == 201
    platform.settle()
    assert acme.invoice("twin-1")["amount_due"] == "640.00"
    assert acme.account("twin")["open_balance"] == [{"currency": "EUR", "amount": "640.00"}]
    acme.advance_to(8)
    assert acme.stage("twin") == "overdue_2"
    assert globex.stage("twin") == "reminder"
    acme.check_mails("twin")
    globex_mails = mail.messages_to(globex_contact)
    assert [m.subject for m in globex_mails] == ["Friendly reminder: 1 invoice due soon"]
    assert all("640" not in m.body for m in globex_mails)
    assert all(globex_contact not in m.rcpt_tos for m in acme.mails("twin"))


def test_restarting_a_service_mid_scenario_changes_nothing(
    platform: Platform, mail: MailServer
) -> None:
    desk = Desk(platform, mail)
    desk.issue("restarted", "restarted-1", "1100.00")
    desk.advance_to(-3)
    desk.advance_to(1)
    desk.pay("restarted", "restarted-p1", "100.00")
    # A crash (SIGKILL) of the service that decides, then a clean restart of the one that sends.
    platform.restart("dunning-svc", hard=True)
    desk.advance_to(8)
    platform.restart("notify-svc")
    desk.advance_to(15)

    account = desk.account("restarted")
    assert account["stage"] == "overdue_3"
    assert account["overdue_balance"] == [{"currency": "EUR", "amount": "1000.00"}]
    stages = [e["summary"] for e in desk.timeline("restarted") if e["kind"] == "stage"]
    assert len(stages) == 4, stages
    for summary, stage in zip(
        stages, ["reminder", "overdue_1", "overdue_2", "overdue_3"], strict=True
    ):
        assert stage in summary
    assert desk.templates("restarted") == ["reminder", "overdue_1", "overdue_2", "overdue_3"]
    assert [n["stage"] for n in desk.notices("restarted", "task")] == ["overdue_3"]
    mails = desk.check_mails("restarted")
    # One message per notice, no duplicate from the crash or the restart.
    assert len(mails) == 4
