"""One platform for the security tests: four service processes at DEBUG with JSON logs,
exporting spans to a real OTLP/HTTP receiver and mail to a real SMTP server, after a
scenario in which tenant ``acme`` creates one resource of every type, with contact data
distinctive enough to be found anywhere it should not be."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.desk import Desk, ok
from tests.support.otlp import OtlpReceiver
from tests.support.platform import ADMIN_KEY, TENANT_KEYS, Platform
from tests.support.smtp import MailServer

#: Contact data that may appear in the API's answers and the mail, never in logs or spans.
CONTACT = {"name": "Zebedee Quux", "email": "zq-pii@example.org", "phone": "+4915112345678"}
ESCALATION = {"name": "Yolanda Xylophone", "email": "yx-pii@example.org", "phone": "+4915187654321"}
#: Every way the scenario writes them (a phone as sent, and without its plus).
PERSONAL = (
    CONTACT["name"],
    CONTACT["email"],
    CONTACT["phone"],
    CONTACT["phone"].lstrip("+"),
    ESCALATION["name"],
    ESCALATION["email"],
    ESCALATION["phone"],
    ESCALATION["phone"].lstrip("+"),
    "Zebedee",
    "Xylophone",
)

#: acme's account, in every acme resource (invoice, payment, notice, task, account): a
#: probe's answer that contains it shows acme's data to someone else.
ACCOUNT = "acme-only-pii"
ACCOUNT_NAME = "Acme Only Customer Ltd"
SEGMENT = "acme-only-seg"
TEMPLATE = "reminder.en"
TEMPLATE_MARKER = "acme-only-template"
PROVIDER = "stripe"
WEBHOOK_SECRET = "whsec-acme-only-secret"
#: The platform's tenants: initech never writes, it answers as "a tenant without acme's
#: data" the same requests globex sends.
TENANTS = {**TENANT_KEYS, "initech": "initech-e2e-key"}


@dataclass
class Write:
    """A write acme made: what a probe with acme's ids and Idempotency-Key sends again."""

    body: Any
    idempotency_key: str
    status: int


@dataclass
class Scenario:
    """What acme created: its id per path parameter, and its writes by path."""

    ids: dict[str, str]
    writes: dict[tuple[str, str, str], Write] = field(default_factory=dict)

    def write(
        self, client: httpx.Client, service: str, method: str, path: str, body: Any
    ) -> httpx.Response:
        """``method path`` as acme with a fresh Idempotency-Key, remembered."""
        key = uuid.uuid4().hex
        response = client.request(method, path, json=body, headers={"Idempotency-Key": key})
        self.writes[(service, method, path)] = Write(body, key, response.status_code)
        return response


@dataclass
class SecurityRun:
    """The running platform and what the scenario left."""

    platform: Platform
    mail: MailServer
    receiver: OtlpReceiver
    scenario: Scenario
    tenant_keys: dict[str, str] = field(default_factory=lambda: dict(TENANTS))
    admin_key: str = ADMIN_KEY
    #: Clients the tests opened, closed with the platform.
    closing: list[httpx.Client] = field(default_factory=list)


@pytest.fixture(scope="package")
def security_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurityRun]:
    """The platform after acme's scenario; stopped at the end of the package."""
    with (
        MailServer() as mail,
        OtlpReceiver() as receiver,
        Platform(
            tmp_path_factory.mktemp("security"),
            env={
                "DUNNING_SMTP_URL": mail.url,
                "DUNNING_LOG_LEVEL": "DEBUG",
                "DUNNING_LOG_FORMAT": "json",
                "DUNNING_ACCESS_LOG": "true",
                "DUNNING_OTLP_ENDPOINT": receiver.url,
                "DUNNING_API_KEYS": ",".join(f"{t}:{k}" for t, k in TENANTS.items()),
                "DUNNING_WEBHOOK_SECRETS": f"acme:{PROVIDER}:{WEBHOOK_SECRET}",
            },
        ) as platform,
    ):
        run = SecurityRun(platform, mail, receiver, run_scenario(platform, mail))
        yield run
        for client in run.closing:
            client.close()


def run_scenario(platform: Platform, mail: MailServer) -> Scenario:
    """acme creates one of each resource type through the public APIs, and the ladder
    sends its notices (emails, then a call task with the phone number)."""
    desk = Desk(platform, mail, "acme")
    invoices, payments = desk.invoices, desk.payments
    dunning, notify = desk.dunning, desk.notify
    scenario = Scenario(
        ids={"account_id": ACCOUNT, "segment": SEGMENT, "key": TEMPLATE, "provider": PROVIDER}
    )

    def invoice(invoice_id: str) -> dict[str, Any]:
        return {
            "invoice_id": invoice_id,
            "account_id": ACCOUNT,
            "account_name": ACCOUNT_NAME,
            "contact": CONTACT,
            "currency": "EUR",
            "amount_due": "1200.00",
            "issue_date": desk.day(-30).isoformat(),
            "due_date": desk.day(0).isoformat(),
        }

    ok(scenario.write(invoices, "invoice-svc", "POST", "/v1/invoices", invoice("pii-1")), 201)
    ok(
        scenario.write(
            invoices, "invoice-svc", "POST", "/v1/invoices/batch", {"invoices": [invoice("pii-2")]}
        )
    )
    scenario.ids["invoice_id"] = "pii-1"
    platform.settle()
    ok(
        scenario.write(
            dunning,
            "dunning-svc",
            "PUT",
            f"/v1/accounts/{ACCOUNT}/contacts",
            {"contact": CONTACT, "escalation_contact": ESCALATION},
        )
    )
    steps = {
        "steps": [
            {"stage": "reminder", "days_before_due": 3, "channels": ["email"]},
            {"stage": "overdue_1", "days_past_due": 1, "channels": ["email"]},
        ],
        "escalation_contact": {"from_stage": "overdue_1"},
    }
    ok(scenario.write(dunning, "dunning-svc", "PUT", f"/v1/policies/{SEGMENT}", steps))
    ok(
        scenario.write(
            notify, "notify-svc", "PUT", f"/v1/templates/{TEMPLATE}", {"intro": TEMPLATE_MARKER}
        )
    )
    ok(
        scenario.write(
            notify,
            "notify-svc",
            "PUT",
            "/v1/profile",
            {"company_name": "Acme Only Tools", "phone": "+49 30 1234567"},
        )
    )
    for day in (-3, 1, 8, 15):
        desk.advance_to(day)
    payment = {
        "payment_id": "pii-p1",
        "account_id": ACCOUNT,
        "currency": "EUR",
        "amount": "100.00",
        "received_at": platform.now.isoformat(),
        "method": "sepa",
    }
    ok(scenario.write(payments, "payment-svc", "POST", "/v1/payments", payment), 201)
    batch = {"payments": [{**payment, "payment_id": "pii-p2", "amount": "50.00"}]}
    ok(scenario.write(payments, "payment-svc", "POST", "/v1/payments/batch", batch))
    scenario.ids["payment_id"] = "pii-p1"
    platform.settle()
    ok(
        scenario.write(
            invoices,
            "invoice-svc",
            "POST",
            "/v1/invoices/pii-2/dispute",
            {"reason": "amount disputed"},
        )
    )
    ok(
        scenario.write(
            dunning,
            "dunning-svc",
            "POST",
            f"/v1/accounts/{ACCOUNT}/promise-to-pay",
            {"amount": "500.00", "currency": "EUR", "promised_date": desk.day(25).isoformat()},
        ),
        201,
    )
    platform.settle()
    notices = desk.notices(ACCOUNT)
    tasks = [n for n in notices if n["channel"] == "task"]
    assert tasks, f"no call task for {ACCOUNT}: {notices}"
    scenario.ids["notification_id"] = notices[0]["notification_id"]
    scenario.ids["task_id"] = tasks[0]["notification_id"]
    ok(
        scenario.write(
            notify,
            "notify-svc",
            "POST",
            f"/v1/tasks/{tasks[0]['notification_id']}/complete",
            {"outcome": "no_answer"},
        )
    )
    address = CONTACT["email"]
    scenario.ids["address"] = address
    ok(
        scenario.write(
            notify, "notify-svc", "POST", f"/v1/contacts/{address}/opt-out", {"reason": "asked"}
        )
    )
    # A phone number in a path too (its "+" may travel as "%2B").
    ok(
        scenario.write(
            notify,
            "notify-svc",
            "POST",
            f"/v1/contacts/{CONTACT['phone']}/opt-out",
            {"channels": ["sms"], "reason": "asked"},
        )
    )
    assert mail.messages_to(CONTACT["email"]), "no mail reached the contact"
    platform.settle()
    return scenario
