"""The kept-open SMTP connections (``channels.smtp``) against a real aiosmtpd server that
counts connections: reused across sends, replaced when the server drops one or it idles
too long, closed when the service stops; and the bookkeeping batches (``commands.batched``)
deciding as the one-notice path did when two notices of one account begin together."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from notify_fixtures import ACME, START, publish, settled, smtp_server, three_invoices, until
from pydantic import ValidationError

from dunning_runtime.app import create_app
from notify_svc.channels import Outgoing, TemporaryFailure
from notify_svc.channels.email import SmtpChannel
from notify_svc.channels.smtp import SmtpConnections
from notify_svc.commands import batched
from notify_svc.domain import NoticeFilter
from notify_svc.main import SPEC
from notify_svc.settings import NotifySettings
from notify_svc.storage import notices
from tests.support.fixtures import ADMIN, running


def outgoing(n: int) -> Outgoing:
    return Outgoing(
        tenant="acme",
        notification_id=f"NTF-POOL-{n}",
        channel="email",
        to="ap@acme.example",
        subject=f"Zahlungserinnerung {n}: überfällig",
        text="Guten Tag,\nbitte zahlen Sie.\n",
        html="<p>Bitte zahlen Sie.</p>",
        sms="",
        message_id=f"<ntf.pool{n}@dunning.invalid>",
        sender="Accounts Receivable <receivables@dunning.invalid>",
        date=datetime(2026, 3, 15, 9, tzinfo=UTC),
    )


async def send_all(settings: Any, count: int) -> list[dict[str, Any]]:
    """``count`` notices through the whole service, one request each; their final state."""
    ids = [f"NTF-P{n}" for n in range(count)]
    async with running(create_app(SPEC, settings)) as client:
        await client.put("/v1/admin/clock", json={"now": START}, headers=ADMIN)
        await publish(settings, *(three_invoices("de-DE", notification_id=i) for i in ids))
        return [await settled(client, i, ACME) for i in ids]


async def test_one_connection_carries_every_mail_and_stop_closes_it(notify_settings: Any) -> None:
    async with smtp_server() as server:
        settings = notify_settings.model_copy(
            update={"smtp_url": f"smtp://127.0.0.1:{server.port}", "delivery_concurrency": 1}
        )
        bodies = await send_all(settings, 6)
        assert [b["status"] for b in bodies] == ["sent"] * 6
        assert len(server.messages) == 6
        assert server.connections == 1  # one handshake for six mails
        # The service stopped: its connection ended (with QUIT), none left open.
        await until(lambda: _done(server.closed == server.connections), 5, "the close")


async def test_a_server_that_drops_connections_loses_and_repeats_nothing(
    notify_settings: Any,
) -> None:
    async with smtp_server() as server:
        server.drop_every = 2  # closes the connection after every second mail
        settings = notify_settings.model_copy(
            update={"smtp_url": f"smtp://127.0.0.1:{server.port}", "delivery_concurrency": 1}
        )
        bodies = await send_all(settings, 6)
    assert [(b["status"], b["attempts"]) for b in bodies] == [("sent", 1)] * 6
    ids = [m["Message-ID"] for m in server.messages]
    assert len(ids) == 6 and len(set(ids)) == 6  # each mail once
    assert server.connections == 3


async def test_a_reused_connection_closed_at_mail_from_is_replaced_at_once(
    notify_settings: Any,
) -> None:
    async with smtp_server() as server:
        settings = notify_settings.model_copy(
            update={"smtp_url": f"smtp://127.0.0.1:{server.port}"}
        )
        connections = SmtpConnections(settings)
        channel = SmtpChannel(connections)
        await channel.send(outgoing(1))
        # The server is shutting the idle connection down as the next mail begins.
        server.mail_replies = ["421 4.4.2 smtp.test closing connection"]
        await channel.send(outgoing(2))
        assert connections.opened == 2 and server.connections == 2
        assert [m["Message-ID"] for m in server.messages] == [
            "<ntf.pool1@dunning.invalid>",
            "<ntf.pool2@dunning.invalid>",
        ]
        # On a fresh connection the same answer is the server's: a temporary failure.
        await connections.close()
        server.mail_replies = ["421 4.4.2 smtp.test closing connection"]
        with pytest.raises(TemporaryFailure):
            await channel.send(outgoing(3))
        await channel.send(outgoing(4))
        await connections.close()
        assert len(server.messages) == 3
        await until(lambda: _done(server.closed == server.connections), 5, "the close")


async def test_a_connection_idle_too_long_is_not_reused(notify_settings: Any) -> None:
    async with smtp_server() as server:
        settings = notify_settings.model_copy(
            update={"smtp_url": f"smtp://127.0.0.1:{server.port}", "smtp_idle_s": 0.05}
        )
        connections = SmtpConnections(settings)
        channel = SmtpChannel(connections)
        await channel.send(outgoing(1))
        await channel.send(outgoing(2))
        assert connections.opened == 1
        await asyncio.sleep(0.1)
        await channel.send(outgoing(3))
        assert connections.opened == 2 and len(server.messages) == 3
        await connections.close()
        await until(lambda: _done(server.closed == 2), 5, "both closed")


async def test_two_notices_of_one_account_beginning_in_one_batch_keep_the_contact_cap(
    client: Any, notify_settings: Any
) -> None:
    """Begun in one batch, the second notice sees the first in flight, as it would in a
    transaction of its own after it: the contact cap holds it. Their outcomes go in one
    batch too, and only a notice still leased to the instance gets one."""
    later = datetime(2026, 3, 16, 9, tzinfo=UTC)  # not due yet: the worker leaves them
    first = three_invoices(
        "en",
        notification_id="NTF-B1",
        stage="reminder",
        stage_sequence=1,
        template="reminder",
        contact_cap_days=3,
        not_before=later,
    )
    second = three_invoices(
        "en",
        notification_id="NTF-B2",
        stage="overdue_1",
        stage_sequence=2,
        contact_cap_days=3,
        not_before=later,
    )
    await publish(notify_settings, first, second)

    async def recorded() -> bool:
        found = [
            await client.get(f"/v1/notifications/{n}", headers=ACME) for n in ("NTF-B1", "NTF-B2")
        ]
        return all(r.status_code == 200 for r in found)

    await until(recorded, what="both recorded")
    runtime = client.app.state.runtime
    wall = datetime.now(UTC)
    async with runtime.database.transaction() as session:
        seqs = [
            r["seq"] for r in await notices.notices_after(session, "acme", NoticeFilter(), None, 10)
        ]
        rows = await notices.claim(session, seqs, "tester", wall, wall + timedelta(seconds=60))
    rows = sorted(rows, key=lambda r: r["stage_sequence"])
    await client.put("/v1/admin/clock", json={"now": "2026-03-16T09:00:00Z"}, headers=ADMIN)

    batch = [batched.Beginning(row, 1, wall, False) for row in rows]
    assert await batched.begin_many(runtime, "tester", 60, batch) == ["begun", "held"]
    outcomes = [batched.Outcome(row, sent=True, provider_id="p-1") for row in rows]
    await batched.record_outcomes(runtime, "tester", outcomes)

    sent = (await client.get("/v1/notifications/NTF-B1", headers=ACME)).json()
    held = (await client.get("/v1/notifications/NTF-B2", headers=ACME)).json()
    assert (sent["status"], sent["attempts"]) == ("sent", 1)
    assert held["status"] == "pending" and held["attempts"] == 0  # held, no outcome


async def _done(value: bool) -> bool:
    return value


@pytest.mark.parametrize("idle_s", [0, -1, 3601])
def test_the_idle_limit_is_checked_at_start(idle_s: float) -> None:
    with pytest.raises(ValidationError, match="smtp_idle_s"):
        NotifySettings(service_name="notify-svc", smtp_idle_s=idle_s)
    assert NotifySettings(service_name="notify-svc").smtp_idle_s == 30


async def test_a_server_without_8bitmime_gets_the_email_packages_7bit_message(
    notify_settings: Any,
) -> None:
    """aiosmtpd offers 8BITMIME only when it keeps the bytes: ``decode_data`` turns it off."""
    sent = []
    for options in ({}, {"decode_data": True}):
        async with smtp_server(**options) as server:
            settings = notify_settings.model_copy(
                update={"smtp_url": f"smtp://127.0.0.1:{server.port}"}
            )
            connections = SmtpConnections(settings)
            await SmtpChannel(connections).send(outgoing(1))
            await connections.close()
            [message] = server.messages
            sent.append(message)
    eight_bit, seven_bit = sent
    assert seven_bit["Subject"] == eight_bit["Subject"] == "Zahlungserinnerung 1: überfällig"
    for part in ("plain", "html"):
        assert (
            seven_bit.get_body(preferencelist=(part,)).get_content()  # type: ignore[union-attr]
            == eight_bit.get_body(preferencelist=(part,)).get_content()  # type: ignore[union-attr]
        )
    assert seven_bit.as_bytes().isascii()
