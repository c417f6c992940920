"""A collector's desk over the running platform: what an ERP posts and a collector reads.

Every call goes through the public HTTP APIs; time moves only through
``Platform.advance``. Dates of a scenario are counted from its due date ``D``, a
Thursday, so that the standard ladder's steps fall on weekdays (D-3 Monday, D+1,
D+8 and D+15 Fridays) and go out at once within business hours.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx

from tests.support.platform import Platform
from tests.support.smtp import MailServer, ReceivedMail

THURSDAY = 3


def ok(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    """The JSON body of a response whose status is one of ``statuses`` (200/201 by default)."""
    wanted = statuses or (200, 201)
    assert response.status_code in wanted, (
        f"{response.request.method} {response.request.url} -> {response.status_code}: "
        f"{response.text}"
    )
    body: dict[str, Any] = response.json()
    return body


class Desk:
    """One tenant's view of the platform, with the scenario's due date ``D``."""

    def __init__(self, platform: Platform, mail: MailServer, tenant: str = "acme") -> None:
        self.platform = platform
        self.mail = mail
        self.tenant = tenant
        self.invoices = platform.client(tenant, "invoice-svc")
        self.payments = platform.client(tenant, "payment-svc")
        self.dunning = platform.client(tenant, "dunning-svc")
        self.notify = platform.client(tenant, "notify-svc")
        # The first Thursday at least five days ahead: the reminder (D-3) is still to come.
        start = platform.now.date() + timedelta(days=5)
        self.due = start + timedelta(days=(THURSDAY - start.weekday()) % 7)

    # --- time ----------------------------------------------------------------------

    def day(self, offset: int) -> date:
        """The date ``D + offset``."""
        return self.due + timedelta(days=offset)

    def advance_to(self, offset: int, hour: int = 10) -> datetime:
        """Move the platform to ``D + offset`` at ``hour``:00 UTC (business hours)."""
        instant = datetime.combine(self.day(offset), time(hour), tzinfo=UTC)
        self.platform.advance(instant)
        return instant

    # --- what the ERP posts --------------------------------------------------------------

    def issue(
        self,
        account: str,
        invoice: str,
        amount: str,
        *,
        due: int = 0,
        currency: str = "EUR",
        **extra: Any,
    ) -> dict[str, Any]:
        """Post an invoice due ``D + due``, issued 30 days before, to the account's contact."""
        body = {
            "invoice_id": invoice,
            "account_id": account,
            "account_name": f"{account.title()} Ltd",
            "contact": {"name": "Accounts Payable", "email": self.address(account)},
            "currency": currency,
            "amount_due": amount,
            "issue_date": (self.day(due) - timedelta(days=30)).isoformat(),
            "due_date": self.day(due).isoformat(),
            **extra,
        }
        return ok(self.invoices.post("/v1/invoices", json=body), 201)

    def pay(
        self, account: str, payment: str, amount: str, *, currency: str = "EUR", **extra: Any
    ) -> dict[str, Any]:
        """Post a payment received now (by bank transfer)."""
        body = {
            "payment_id": payment,
            "account_id": account,
            "currency": currency,
            "amount": amount,
            "received_at": self.platform.now.isoformat(),
            "method": "sepa",
            **extra,
        }
        response = ok(self.payments.post("/v1/payments", json=body), 201)
        self.platform.settle()
        return response

    def act(self, client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST an action (a manual one, a void, a dispute ...) and wait until its effects
        have settled across the platform."""
        response = ok(client.post(path, json=body or {}))
        self.platform.settle()
        return response

    # --- what a collector reads ---------------------------------------------------------

    @staticmethod
    def address(account: str) -> str:
        """The account's contact address (each scenario's accounts are distinct)."""
        return f"ap@{account}.example"

    def account(self, account: str) -> dict[str, Any]:
        """GET /v1/accounts/{id}."""
        return ok(self.dunning.get(f"/v1/accounts/{account}"))

    def stage(self, account: str) -> str:
        """The account's dunning stage."""
        return str(self.account(account)["stage"])

    def invoice(self, invoice: str) -> dict[str, Any]:
        """GET /v1/invoices/{id}."""
        return ok(self.invoices.get(f"/v1/invoices/{invoice}"))

    def timeline(self, account: str) -> list[dict[str, Any]]:
        """Every timeline entry of the account, oldest first."""
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = ok(self.dunning.get(f"/v1/accounts/{account}/timeline", params=params))
            entries.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return entries

    def said(self, account: str, text: str) -> bool:
        """Whether some timeline entry's summary or data mentions ``text``."""
        return any(text in f"{e['summary']} {e['data']}" for e in self.timeline(account))

    def notices(self, account: str, channel: str | None = None) -> list[dict[str, Any]]:
        """notify-svc's records of the account's notices, oldest first."""
        body = ok(self.notify.get("/v1/notifications", params={"account_id": account}))
        items: list[dict[str, Any]] = body["items"]
        return [n for n in items if channel is None or n["channel"] == channel]

    def templates(self, account: str) -> list[str]:
        """Templates of the account's email notices sent, oldest first."""
        return [n["template"] for n in self.notices(account, "email") if n["status"] == "sent"]

    def mails(self, account: str) -> list[ReceivedMail]:
        """Messages the SMTP server received for the account's contact."""
        return self.mail.messages_to(self.address(account))

    def check_mails(self, account: str) -> list[ReceivedMail]:
        """Exactly one message at the SMTP server per email notice sent, to its recipient
        and with its subject, and no other message to the account's contact."""
        sent = [n for n in self.notices(account, "email") if n["status"] == "sent"]
        mails = self.mails(account)
        by_id = Counter(m.message_id for m in mails)
        for notice in sent:
            count = by_id[notice["provider_message_id"]]
            assert count == 1, f"{count} messages at the SMTP server for notice {notice}"
        assert len(mails) == len(sent), (
            f"{len(mails)} messages to {self.address(account)}, {len(sent)} email notices sent"
        )
        subjects = {m.message_id: m.subject for m in mails}
        for notice in sent:
            assert notice["to"] == self.address(account)
            assert subjects[notice["provider_message_id"]] == notice["subject"]
        return mails


def check_every_mail(platform: Platform, mail: MailServer) -> None:
    """Across the whole run and both tenants: one message at the SMTP server per email
    notice notify-svc recorded as sent, and no message that is not one of them."""
    sent: list[str] = []
    for tenant in ("acme", "globex"):
        client = platform.client(tenant, "notify-svc")
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"channel": "email", "status": "sent", "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = ok(client.get("/v1/notifications", params=params))
            sent += [n["provider_message_id"] for n in page["items"] if n["channel"] == "email"]
            cursor = page["next_cursor"]
            if not cursor:
                break
    received = Counter(m.message_id for m in mail.messages)
    assert all(count == 1 for count in received.values()), received.most_common(3)
    assert sorted(received) == sorted(sent)
