"""notify-svc end to end over email: NotificationRequested in on the bus, exactly one
mail at a real SMTP server, NotificationSent out on the bus in the same trace."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from notify_fixtures import (
    ACME,
    GLOBEX,
    SmtpServer,
    publish,
    published,
    settled,
    three_invoices,
    until,
)

from dunning_events import NotificationFailed, NotificationSent
from dunning_events.samples import TRACEPARENT
from tests.support.fixtures import ADMIN


def parts(message: Any) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


async def test_a_consolidated_german_notice_arrives_once_and_is_published(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    notice = three_invoices("de-DE", notification_id="NTF-1")
    await publish(notify_settings, notice)
    body = await settled(client, "NTF-1")
    assert body["status"] == "sent", body
    assert body["attempts"] == 1 and body["possible_duplicate"] is False

    [message] = smtp.messages
    assert message["To"] == "ap@acme.example"
    # No profile yet: the configured sender, and no Reply-To to invent.
    assert message["From"] == "Accounts Receivable <receivables@dunning.invalid>"
    assert message["Reply-To"] is None
    assert message["Message-ID"] == body["message_id"]
    assert message["Message-ID"].startswith("<ntf.") and message["Date"]
    assert message["Subject"] == ("Zahlungserinnerung: 3 überfällige Rechnungen (4.230,50\xa0€)")
    text, html = parts(message)
    assert text.startswith("Guten Tag Dana Fischer,")
    for number, amount, due in (
        ("2026-1001", "1.250,00\xa0€", "01.03.2026"),
        ("2026-1002", "980,50\xa0€", "02.03.2026"),
        ("2026-1003", "2.000,00\xa0€", "03.03.2026"),
    ):
        line = next(li for li in text.splitlines() if number in li)
        assert amount in line and due in line, line
        assert number in html and amount in html
    assert "Überfällig insgesamt: 4.230,50\xa0€" in text
    assert "14 Tage überfällig" in text and "Mit freundlichen Grüßen" in text
    # Every line in German: the next step and the default payment instructions too.
    assert "Nächster Schritt: eine zweite Mahnung in 7 Tagen" in text
    assert "Bitte überweisen Sie den Betrag unter Angabe der Rechnungsnummer" in text
    assert "<td>2026-1002</td>" in html and "4.230,50\xa0€" in html
    assert body["body_text"] == text.replace("\r\n", "\n")

    events = await published(notify_settings, 1)
    [sent] = [e for e in events if isinstance(e.data, NotificationSent)]
    assert sent.data.notification_id == "NTF-1" and sent.data.channel == "email"
    assert sent.data.provider_message_id == message["Message-ID"]
    assert sent.subject == "ACME-0042" and sent.tenant == "acme" and sent.source == "/notify-svc"
    assert sent.traceparent is not None
    assert sent.traceparent.split("-")[1] == TRACEPARENT.split("-")[1]  # the trace continues

    # A redelivered command (same notification_id, a new event) sends nothing.
    await publish(notify_settings, notice)
    assert (await client.post("/v1/admin/tick", headers=ADMIN)).status_code == 200
    await asyncio.sleep(1.0)
    assert len(smtp.messages) == 1
    page = (await client.get("/v1/notifications", headers=ACME)).json()
    assert [n["notification_id"] for n in page["items"]] == ["NTF-1"]
    # Another tenant sees none of it.
    assert (await client.get("/v1/notifications/NTF-1", headers=GLOBEX)).status_code == 404


async def test_the_english_notice_formats_for_english(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    await publish(notify_settings, three_invoices("en-US", notification_id="NTF-EN"))
    assert (await settled(client, "NTF-EN"))["status"] == "sent"
    [message] = smtp.messages
    assert message["Subject"] == "Payment reminder: 3 overdue invoices (€4,230.50)"
    text, html = parts(message)
    assert text.startswith("Dear Dana Fischer,")
    assert (
        "- Invoice 2026-1002, due Mar 2, 2026: €980.50 open of €980.50 (13 days past due)" in text
    )
    assert "Total overdue: €4,230.50" in text
    assert '<html lang="en">' in html


async def test_a_temporary_smtp_failure_is_retried(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    smtp.data_replies = ["451 4.3.0 mailbox busy, try later"]
    await publish(notify_settings, three_invoices(notification_id="NTF-T"))
    body = await settled(client, "NTF-T")
    assert (body["status"], body["attempts"]) == ("sent", 2)
    assert len(smtp.messages) == 1


async def test_a_permanent_smtp_failure_is_not_retried(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    smtp.rcpt_replies = ["550 5.1.1 no such user"]
    await publish(notify_settings, three_invoices(notification_id="NTF-P"))
    body = await settled(client, "NTF-P")
    assert (body["status"], body["attempts"], body["permanent"]) == ("failed", 1, True)
    assert "550" in body["error"]
    assert smtp.messages == []
    [failed] = [
        e.data
        for e in await published(notify_settings, 1)
        if isinstance(e.data, NotificationFailed)
    ]
    assert failed.permanent and failed.attempts == 1 and "550" in failed.error


async def test_a_temporary_then_a_permanent_smtp_failure_stops_the_retries(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    smtp.data_replies = ["452 4.3.1 insufficient storage", "554 5.7.1 message refused"]
    await publish(notify_settings, three_invoices(notification_id="NTF-TP"))
    body = await settled(client, "NTF-TP")
    assert (body["status"], body["attempts"], body["permanent"]) == ("failed", 2, True)
    assert "554" in body["error"] and smtp.messages == []


async def test_temporary_failures_until_the_time_runs_out_fail_the_notice(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    smtp.data_replies = ["421 4.7.0 try again later"] * 1000
    await publish(notify_settings, three_invoices(notification_id="NTF-G"))
    body = await settled(client, "NTF-G")
    assert body["status"] == "failed" and body["permanent"] is False
    assert body["attempts"] > 1 and "421" in body["error"]
    [failed] = [
        e.data
        for e in await published(notify_settings, 1)
        if isinstance(e.data, NotificationFailed)
    ]
    assert not failed.permanent and failed.attempts == body["attempts"]


async def test_a_crash_between_send_and_record_sends_at_most_one_duplicate_and_marks_it(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any, monkeypatch: Any
) -> None:
    from notify_svc.workers import Delivery

    original = Delivery._sent
    crashed: list[str] = []

    async def die_once(self: Delivery, row: Any, provider_id: str | None, attempts: int) -> None:
        if not crashed:
            crashed.append(row["notification_id"])
            raise RuntimeError("the process died after the send, before recording it")
        await original(self, row, provider_id, attempts)

    monkeypatch.setattr(Delivery, "_sent", die_once)
    await publish(notify_settings, three_invoices(notification_id="NTF-C"))
    body = await settled(client, "NTF-C")
    assert crashed == ["NTF-C"]
    assert body["status"] == "sent" and body["possible_duplicate"] is True
    assert len(smtp.messages) == 2  # the one duplicate, with the same Message-ID
    assert smtp.messages[0]["Message-ID"] == smtp.messages[1]["Message-ID"]
    events = await published(notify_settings, 1)
    assert len([e for e in events if isinstance(e.data, NotificationSent)]) == 1


async def test_a_refused_connection_is_temporary(
    settings_factory: Any, notify_settings: Any
) -> None:
    from notify_fixtures import free_port

    from dunning_runtime.app import create_app
    from notify_svc.main import SPEC
    from tests.support.fixtures import running

    settings = notify_settings.model_copy(
        update={"smtp_url": f"smtp://127.0.0.1:{free_port()}", "delivery_retry_max_s": 0.5}
    )
    async with running(create_app(SPEC, settings)) as client:
        await client.put("/v1/admin/clock", json={"now": "2026-03-15T09:00:00Z"}, headers=ADMIN)
        await publish(settings, three_invoices(notification_id="NTF-R"))
        body = await settled(client, "NTF-R")
    assert body["status"] == "failed" and body["permanent"] is False
    assert "connect" in body["error"].lower()


async def test_without_an_smtp_server_mail_is_written_as_eml_files(
    notify_settings: Any, tmp_path: Any
) -> None:
    from dunning_runtime.app import create_app
    from notify_svc.main import SPEC
    from tests.support.fixtures import running

    settings = notify_settings.model_copy(update={"smtp_url": ""})
    async with running(create_app(SPEC, settings)) as client:
        await client.put("/v1/admin/clock", json={"now": "2026-03-15T09:00:00Z"}, headers=ADMIN)
        await publish(settings, three_invoices(notification_id="NTF-F"))
        body = await settled(client, "NTF-F")
    assert body["status"] == "sent"
    files = list((settings.data_dir / "outbox" / "email" / "acme").glob("*.eml"))
    assert len(files) == 1
    assert b"Zahlungserinnerung" in files[0].read_bytes() or b"=?utf-8?" in files[0].read_bytes()


async def test_a_held_notice_waits_for_not_before(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    await publish(
        notify_settings,
        three_invoices(notification_id="NTF-H", not_before="2026-03-16T08:00:00+01:00"),
    )

    async def recorded() -> bool:
        return (await client.get("/v1/notifications/NTF-H", headers=ACME)).status_code == 200

    await until(recorded)
    assert (await client.post("/v1/admin/tick", headers=ADMIN)).status_code == 200
    held = (await client.get("/v1/notifications/NTF-H", headers=ACME)).json()
    assert held["status"] == "pending" and held["due_at"] == "2026-03-16T07:00:00Z"
    assert smtp.messages == []
    await client.put("/v1/admin/clock", json={"now": "2026-03-16T07:00:00Z"}, headers=ADMIN)
    assert (await client.post("/v1/admin/tick", headers=ADMIN)).status_code == 200
    assert (await settled(client, "NTF-H"))["status"] == "sent"
    assert len(smtp.messages) == 1


async def test_copies_go_to_cc_contacts_not_opted_out_and_the_list_filters(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    await client.post("/v1/contacts/ceo@acme.example/opt-out", headers=ACME)
    cc = [
        {"name": "Escalation", "email": "cfo@acme.example"},
        {"name": "Opted out", "email": "ceo@acme.example"},
    ]
    await publish(
        notify_settings,
        three_invoices("en", notification_id="CC-1", cc=cc),
        three_invoices(
            "en",
            notification_id="CC-2",
            account_id="OTHER-1",
            channel="sms",
            recipient={"name": "No phone", "email": "x@other.example"},
        ),
    )
    body = await settled(client, "CC-1")
    assert body["status"] == "sent" and body["cc"] == ["cfo@acme.example"]
    [message] = smtp.messages
    assert message["Cc"] == "cfo@acme.example"
    [(_, recipients)] = smtp.envelopes
    assert sorted(recipients) == ["ap@acme.example", "cfo@acme.example"]
    await settled(client, "CC-2")

    async def ids(query: str) -> list[str]:
        page = (await client.get(f"/v1/notifications?{query}", headers=ACME)).json()
        return [n["notification_id"] for n in page["items"]]

    assert await ids("account_id=ACME-0042") == ["CC-1"]
    assert await ids("status=suppressed") == ["CC-2"]
    assert await ids("channel=sms") == ["CC-2"]
    # Two accounts, two partitions: recorded in either order, each on one page.
    first = (await client.get("/v1/notifications?limit=1", headers=ACME)).json()
    rest = await ids(f"cursor={first['next_cursor']}")
    assert sorted([first["items"][0]["notification_id"], *rest]) == ["CC-1", "CC-2"]
    bad = await client.get("/v1/notifications?cursor=garbage!", headers=ACME)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.cursor"


async def test_a_notice_being_retried_does_not_hold_the_next_one(
    smtp: SmtpServer, notify_settings: Any
) -> None:
    from dunning_runtime.app import create_app
    from notify_svc.main import SPEC
    from tests.support.fixtures import running

    # Retries for a minute, so however slow the machine the notice is still retrying.
    settings = notify_settings.model_copy(update={"delivery_retry_max_s": 60})
    async with running(create_app(SPEC, settings)) as client:
        await client.put("/v1/admin/clock", json={"now": "2026-03-15T09:00:00Z"}, headers=ADMIN)
        smtp.deferred.add("slow@acme.example")
        slow = {"name": "Slow Mailbox", "email": "slow@acme.example"}
        await publish(settings, three_invoices("en", notification_id="SLOW-1", recipient=slow))

        async def retrying() -> bool:
            body = (await client.get("/v1/notifications/SLOW-1", headers=ACME)).json()
            return bool(body.get("attempts", 0) >= 1 and body["status"] == "pending")

        await until(retrying, what="SLOW-1 retrying")
        # The same account, so the same partition: the consumer has moved on.
        await publish(settings, three_invoices("en", notification_id="NEXT-1"))
        assert (await settled(client, "NEXT-1"))["status"] == "sent"
        pending = (await client.get("/v1/notifications/SLOW-1", headers=ACME)).json()
        assert pending["status"] == "pending" and "451" in pending["error"]
        smtp.deferred.clear()
        body = await settled(client, "SLOW-1")
    assert body["status"] == "sent" and body["attempts"] >= 2
    assert [m["To"] for m in smtp.messages] == ["ap@acme.example", "slow@acme.example"]


async def test_two_instances_send_each_notice_exactly_once(
    smtp: SmtpServer, notify_settings: Any
) -> None:
    from dunning_runtime.app import create_app
    from notify_svc.main import SPEC
    from tests.support.fixtures import running

    async with (
        running(create_app(SPEC, notify_settings)) as first,
        running(create_app(SPEC, notify_settings)) as second,
    ):
        for client in (first, second):
            await client.put("/v1/admin/clock", json={"now": "2026-03-15T09:00:00Z"}, headers=ADMIN)
        notices = [
            three_invoices("en", notification_id=f"DUO-{n}", account_id=f"ACC-{n % 10}")
            for n in range(30)
        ]
        await publish(notify_settings, *notices)
        await publish(notify_settings, *notices[:10])  # and some redelivered

        async def all_sent() -> bool:
            page = (await first.get("/v1/notifications?status=sent", headers=ACME)).json()
            return len(page["items"]) == 30

        await until(all_sent, timeout=60, what="30 notices sent")
        await second.post("/v1/admin/tick", headers=ADMIN)
        await asyncio.sleep(0.5)
    ids = [m["Message-ID"] for m in smtp.messages]
    assert len(ids) == 30 and len(set(ids)) == 30


async def test_the_tenants_profile_names_the_sender_and_takes_the_replies(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    profile = {"company_name": "Acme Tools GmbH", "email": "ar@acme.example"}
    assert (await client.put("/v1/profile", json=profile, headers=ACME)).status_code == 200
    await publish(notify_settings, three_invoices("en-GB", notification_id="NTF-P"))
    assert (await settled(client, "NTF-P"))["status"] == "sent"
    [message] = smtp.messages
    assert message["From"] == "Acme Tools GmbH <receivables@dunning.invalid>"
    assert message["Reply-To"] == "ar@acme.example"
