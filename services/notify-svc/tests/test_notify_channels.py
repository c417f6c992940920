"""SMS and webhooks against a real local HTTP server; suppression; collector tasks."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from notify_fixtures import (
    ACME,
    HttpServer,
    SmtpServer,
    publish,
    published,
    request,
    settled,
    three_invoices,
    until,
)
from prometheus_client import REGISTRY

from dunning_events import DunningStageChanged
from dunning_events.notifications import CollectorTaskCompleted, NotificationSuppressed
from dunning_events.samples import sample_event
from tests.support.fixtures import ADMIN


async def test_an_sms_is_retried_after_a_500_and_sent_once(
    client: httpx.AsyncClient, http: HttpServer, notify_settings: Any
) -> None:
    http.replies = [(500, 0.0)]
    await publish(notify_settings, three_invoices("de-DE", notification_id="SMS-1", channel="sms"))
    body = await settled(client, "SMS-1")
    assert (body["status"], body["attempts"]) == ("sent", 2)
    assert body["to"] == "+49 30 1234567" and body["provider_message_id"] == "msg-2"
    assert [r["path"] for r in http.requests] == ["/sms", "/sms"]
    sent = json.loads(http.requests[1]["body"])
    assert sent["to"] == "+49 30 1234567" and sent["reference"] == "SMS-1"
    assert "4.230,50\xa0€" in sent["text"]
    assert http.requests[1]["headers"]["authorization"] == "Bearer sms-token"


async def test_a_webhook_is_signed_and_a_timeout_is_retried(
    client: httpx.AsyncClient, http: HttpServer, notify_settings: Any
) -> None:
    profile = {"company_name": "Acme Tools GmbH", "webhook_url": f"{http.url}/hook"}
    assert (await client.put("/v1/profile", json=profile, headers=ACME)).status_code == 200
    http.replies = [(200, 2.0)]  # longer than the 0.5 s timeout: a timeout, then an answer
    await publish(notify_settings, three_invoices("en", notification_id="WH-1", channel="webhook"))
    body = await settled(client, "WH-1")
    assert (body["status"], body["to"]) == ("sent", f"{http.url}/hook")
    assert body["attempts"] >= 2
    last = http.requests[-1]
    assert last["signature_ok"], last["headers"].get("dunning-signature")
    assert last["headers"]["dunning-signature"].startswith("t=")
    assert last["headers"]["idempotency-key"] == "WH-1"
    payload = json.loads(last["body"])
    assert payload["notification_id"] == "WH-1" and payload["account_id"] == "ACME-0042"
    assert len(payload["request"]["invoices"]) == 3


async def test_a_webhook_answered_4xx_fails_at_once(
    client: httpx.AsyncClient, http: HttpServer, notify_settings: Any
) -> None:
    profile = {"company_name": "Acme", "webhook_url": f"{http.url}/hook"}
    await client.put("/v1/profile", json=profile, headers=ACME)
    http.replies = [(404, 0.0)]
    await publish(notify_settings, request(notification_id="WH-2", channel="webhook"))
    body = await settled(client, "WH-2")
    assert (body["status"], body["permanent"], body["attempts"]) == ("failed", True, 1)
    assert "404" in body["error"]


def metric(name: str, **labels: str) -> float:
    """A notify-svc metric's value in this process now."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_opted_out_and_unreachable_contacts_are_suppressed_and_published(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    suppressed_before = {
        c: metric("dunning_notifications_total", channel=c, outcome="suppressed")
        for c in ("email", "sms", "webhook")
    }
    out = await client.post(
        "/v1/contacts/AP@Acme.example/opt-out", json={"reason": "asked by phone"}, headers=ACME
    )
    assert out.status_code == 200, out.text
    assert out.json()["address"] == "ap@acme.example"
    assert [o["channel"] for o in out.json()["opted_out"]] == ["email"]
    assert out.json()["opted_out"][0]["since"] == "2026-03-15T09:00:00Z"
    profile = (await client.get("/v1/profile", headers=ACME)).json()
    assert profile["updated_at"] is None and profile["company_name"]
    no_phone = {"name": "Dana Fischer", "email": "ap@acme.example"}
    await publish(
        notify_settings,
        request(notification_id="OPT-1"),
        request(notification_id="OPT-2", channel="sms", recipient=no_phone),
        request(notification_id="OPT-4", channel="webhook"),  # no endpoint in the profile
    )
    first = await settled(client, "OPT-1")
    assert (first["status"], first["reason"]) == ("suppressed", "opted_out")
    second = await settled(client, "OPT-2")
    assert (second["status"], second["reason"]) == ("suppressed", "no_address")
    assert "no phone number" in second["error"]
    hook = await settled(client, "OPT-4")
    assert (hook["status"], hook["reason"]) == ("suppressed", "no_address")
    suppressed = [
        e.data
        for e in await published(notify_settings, 2)
        if isinstance(e.data, NotificationSuppressed)
    ]
    assert {(s.notification_id, s.reason) for s in suppressed} == {
        ("OPT-1", "opted_out"),
        ("OPT-2", "no_address"),
        ("OPT-4", "no_address"),
    }
    for channel, before in suppressed_before.items():
        after = metric("dunning_notifications_total", channel=channel, outcome="suppressed")
        assert after - before == 1, channel
    sends_before = metric(
        "dunning_notification_send_duration_seconds_count", channel="email", outcome="sent"
    )
    # Back in: the next notice goes out.
    back = await client.post("/v1/contacts/ap@acme.example/opt-in", headers=ACME)
    assert back.json()["opted_out"] == []
    await publish(notify_settings, request(notification_id="OPT-3"))
    assert (await settled(client, "OPT-3"))["status"] == "sent"
    assert len(smtp.messages) == 1
    sends = metric(
        "dunning_notification_send_duration_seconds_count", channel="email", outcome="sent"
    )
    assert sends - sends_before == 1
    bad = await client.post("/v1/contacts/nobody/opt-out", headers=ACME)
    assert bad.status_code == 422
    wrong = await client.post(
        "/v1/contacts/ap@acme.example/opt-out", json={"channels": ["sms"]}, headers=ACME
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "body.channels[0]"


async def test_a_return_to_current_makes_earlier_notices_obsolete(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    # A held notice, then the account pays: it is suppressed, never sent.
    await publish(
        notify_settings,
        request(notification_id="OB-1", stage_sequence=2, not_before="2026-03-16T08:00:00Z"),
    )
    await until(lambda: _status_is(client, "OB-1", "pending"), what="OB-1 recorded")
    paid = sample_event(
        DunningStageChanged,
        from_stage="overdue_1",
        to_stage="current",
        sequence=3,
        reason="paid in full",
    )
    await publish(notify_settings, paid)
    await until(lambda: _status_is(client, "OB-1", "suppressed"), what="OB-1 suppressed")
    # A request made before that change but arriving after it is obsolete too ...
    await publish(notify_settings, request(notification_id="OB-2", stage_sequence=2))
    body = await settled(client, "OB-2")
    assert (body["status"], body["reason"]) == ("suppressed", "obsolete")
    # ... while the thank-you requested with the change itself goes out.
    await publish(
        notify_settings,
        request(
            notification_id="OB-3",
            stage="current",
            stage_sequence=3,
            template="thank_you",
            invoices=[],
            total_overdue=[],
            total_open=[],
        ),
    )
    assert (await settled(client, "OB-3"))["status"] == "sent"
    await client.put("/v1/admin/clock", json={"now": "2026-03-17T00:00:00Z"}, headers=ADMIN)
    await client.post("/v1/admin/tick", headers=ADMIN)
    assert [m["Subject"] for m in smtp.messages] == ["Vielen Dank für Ihre Zahlung"]


async def _status_is(client: httpx.AsyncClient, notification_id: str, status: str) -> bool:
    response = await client.get(f"/v1/notifications/{notification_id}", headers=ACME)
    return response.status_code == 200 and response.json()["status"] == status


async def test_a_call_task_is_opened_and_completed_with_a_promise(
    client: httpx.AsyncClient, notify_settings: Any
) -> None:
    await publish(
        notify_settings,
        three_invoices(
            "en", notification_id="TASK-1", channel="task", stage="overdue_3", template="overdue_3"
        ),
    )
    assert (await settled(client, "TASK-1"))["status"] == "sent"
    tasks = (await client.get("/v1/tasks?status=open", headers=ACME)).json()["items"]
    [task] = tasks
    assert task["task_id"] == "TASK-1" and task["account_name"] == "ACME GmbH"
    assert task["contact"]["phone"] == "+49 30 1234567" and "2026-1003" in task["body_text"]
    promise = {
        "outcome": "promised",
        "amount": "4230.50",
        "currency": "EUR",
        "promised_date": "2026-03-31",
        "note": "Pays at month end",
        "completed_by": "collector:jo",
    }
    done = await client.post("/v1/tasks/TASK-1/complete", json=promise, headers=ACME)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed" and done.json()["promised_amount"] == "4230.50"
    again = await client.post("/v1/tasks/TASK-1/complete", json=promise, headers=ACME)
    assert again.status_code == 200
    other = await client.post(
        "/v1/tasks/TASK-1/complete", json={"outcome": "no_answer"}, headers=ACME
    )
    assert other.status_code == 409
    incomplete = await client.post(
        "/v1/tasks/TASK-1/complete", json={"outcome": "promised"}, headers=ACME
    )
    assert incomplete.status_code == 422
    assert (await client.get("/v1/tasks?status=open", headers=ACME)).json()["items"] == []
    completed = [
        e.data
        for e in await published(notify_settings, 2)
        if isinstance(e.data, CollectorTaskCompleted)
    ]
    [event] = completed
    assert event.outcome == "promised" and str(event.promised_amount.amount) == "4230.50"  # type: ignore[union-attr]
    assert str(event.promised_date) == "2026-03-31"
    assert (await client.get("/v1/tasks/NOPE", headers=ACME)).status_code == 404


async def test_each_tenant_s_webhooks_are_signed_with_its_own_key(http: HttpServer) -> None:
    """A tenant verifies with its key; another tenant's key (which it may know) does not
    verify, so no tenant can forge a notice to another's endpoint."""
    from datetime import UTC, datetime

    from dunning_runtime import signing
    from notify_svc.channels import Outgoing
    from notify_svc.channels.webhook import WebhookChannel

    async with httpx.AsyncClient() as client:
        channel = WebhookChannel(client, {"acme": "whsec-acme", "globex": "whsec-globex"}, 5.0)
        for tenant in ("globex", "initech"):
            await channel.send(
                Outgoing(
                    tenant=tenant,
                    notification_id=f"WH-{tenant}",
                    channel="webhook",
                    to=f"{http.url}/hook",
                    subject="",
                    text="",
                    html="",
                    sms="",
                    message_id="",
                    sender="",
                    date=datetime(2026, 3, 1, tzinfo=UTC),
                    payload={"notification_id": f"WH-{tenant}"},
                )
            )
    globex, initech = http.requests[-2:]
    header = globex["headers"]["dunning-signature"]
    now = float(header.split(",")[0].removeprefix("t="))
    assert signing.verify(["whsec-globex"], header, globex["body"], now) == "whsec-globex"
    with pytest.raises(signing.SignatureError):
        signing.verify(["whsec-acme"], header, globex["body"], now)
    assert "dunning-signature" not in initech["headers"]  # no key: unsigned, as documented


def test_outgoing_webhook_secrets_are_one_per_tenant_and_stay_secret() -> None:
    from pydantic import ValidationError

    from notify_svc.settings import NotifySettings

    settings = NotifySettings(
        service_name="notify-svc", outgoing_webhook_secrets="acme:k:with:colons, globex:k2"
    )
    keys = {t: s.get_secret_value() for t, s in settings.outgoing_webhook_secrets.items()}
    assert keys == {"acme": "k:with:colons", "globex": "k2"}
    assert "k2" not in repr(settings)
    for value, words in (("acme", "tenant:secret"), ("acme:a,acme:b", "two secrets")):
        with pytest.raises(ValidationError, match=words):
            NotifySettings(service_name="notify-svc", outgoing_webhook_secrets=value)
