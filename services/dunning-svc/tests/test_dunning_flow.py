"""dunning-svc on the bus: events in, commands out, state and timeline through the API."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from dunning_fixtures import (
    ACME,
    GLOBEX,
    Reader,
    disputed,
    issued,
    paid,
    publish,
)

from dunning_events import (
    CollectionsHandoffRequested,
    DunningStageChanged,
    NotificationRequested,
    make_envelope,
    topics,
)
from dunning_events.codec import to_kafka
from dunning_runtime.app import create_app
from dunning_runtime.bus import create_bus
from dunning_runtime.bus.port import OutgoingMessage
from dunning_svc.main import SPEC
from tests.support.fixtures import ADMIN, running, until


async def account(client: httpx.AsyncClient, account_id: str = "ACME-42") -> dict[str, Any]:
    response = await client.get(f"/v1/accounts/{account_id}", headers=ACME)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def known(client: httpx.AsyncClient, account_id: str, invoices: int = 1) -> None:
    async def check() -> bool:
        response = await client.get(f"/v1/accounts/{account_id}", headers=ACME)
        return response.status_code == 200 and len(response.json()["invoices"]) >= invoices

    await until(check, what=f"{account_id} known with {invoices} open invoices")


async def move(client: httpx.AsyncClient, when: datetime) -> None:
    """Set the clock and run the timers."""
    response = await client.put("/v1/admin/clock", json={"now": when.isoformat()}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert (await client.post("/v1/admin/tick", headers=ADMIN)).status_code == 200


def day(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, 10, tzinfo=UTC)


async def test_events_in_commands_out_state_and_timeline(client, dunning_settings) -> None:
    async with Reader(dunning_settings) as reader:
        await publish(dunning_settings, issued("INV-1", due=date(2026, 3, 3)))
        await known(client, "ACME-42")
        await move(client, day(date(2026, 3, 2)))
        out = await reader.drain_until(lambda seen: len(seen) >= 2)
        # Two topics: no order between them.
        assert sorted(type(e).__name__ for e in out) == [
            "DunningStageChanged",
            "NotificationRequested",
        ]
        [notice] = [e for e in out if isinstance(e, NotificationRequested)]
        assert isinstance(notice, NotificationRequested)
        assert notice.stage == "reminder" and notice.recipient.email == "ap@acme.example"
        published_reminder = notice.model_dump(mode="json")
        assert [i.invoice_id for i in notice.invoices] == ["INV-1"]
        await move(client, day(date(2026, 3, 5)))
        out = await reader.drain_until(lambda seen: len(seen) >= 2)
        assert [e.to_stage for e in out if isinstance(e, DunningStageChanged)] == ["overdue_1"]
        state = await account(client)
        assert state["stage"] == "overdue_1"
        assert state["overdue_balance"] == [{"currency": "EUR", "amount": "1250.00"}]
        assert state["oldest_days_past_due"] == 2
        assert state["next_action_at"] == "2026-03-11T08:00:00Z"
        # Paid in full: current at once, a thank-you.
        await publish(dunning_settings, paid("P1", ("INV-1", "1250.00")))

        async def current() -> bool:
            return (await account(client))["stage"] == "current"

        await until(current, what="return to current")
        out = await reader.drain_until(lambda seen: len(seen) >= 2)
        assert sorted(type(e).__name__ for e in out) == [
            "DunningStageChanged",
            "NotificationRequested",
        ]
        assert [e.template for e in out if isinstance(e, NotificationRequested)] == ["thank_you"]
    timeline = (await client.get("/v1/accounts/ACME-42/timeline", headers=ACME)).json()
    kinds = [e["kind"] for e in timeline["items"]]
    assert kinds[0] == "input" and "command" in kinds and "stage" in kinds
    commands = [e for e in timeline["items"] if e["kind"] == "command"]
    assert commands[0]["summary"] == "DunningStageChanged reminder"
    assert commands[1]["summary"] == "NotificationRequested reminder email"
    # The timeline keeps the command as the bus carried it, not a second rendering of it.
    assert commands[1]["data"] == published_reminder
    assert all(e["policy_version"] == 0 for e in commands)
    metrics = (await client.get("/metrics")).text
    assert 'dunning_stage_changes_total{segment="standard",to_stage="overdue_1"}' in metrics
    assert 'dunning_commands_total{event_type="NotificationRequested"}' in metrics
    decided = (
        'dunning_decisions_total{from_stage="reminder",segment="standard",to_stage="overdue_1"}'
    )
    assert decided in metrics
    # Scraping computed the business gauges from this test's accounts.
    assert 'dunning_accounts{segment="standard",stage="' in metrics
    assert 'dunning_open_balance{currency="EUR",tenant="acme"}' in metrics
    # Another tenant's key sees nothing.
    response = await client.get("/v1/accounts/ACME-42", headers=GLOBEX)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_redelivery_of_any_event_is_a_no_op(client, dunning_settings) -> None:
    envelope = make_envelope(
        issued("INV-1", due=date(2026, 3, 3)),
        tenant="acme",
        source="/tests",
        time=datetime(2026, 3, 1, tzinfo=UTC),
    )
    kafka = to_kafka(envelope)
    message = OutgoingMessage(topics.INVOICES, kafka.key, kafka.value, kafka.headers)
    bus = create_bus(dunning_settings)
    await bus.start()
    await bus.publish([message])
    await known(client, "ACME-42")
    before = (await client.get("/v1/accounts/ACME-42/timeline", headers=ACME)).json()
    await bus.publish([message, message])
    # A marker behind the duplicates: once it is applied, so were they (one partition).
    await publish(dunning_settings, issued("INV-2", due=date(2026, 3, 3)))
    await known(client, "ACME-42", invoices=2)
    await bus.close()
    after = (await client.get("/v1/accounts/ACME-42/timeline", headers=ACME)).json()
    added = after["items"][len(before["items"]) :]
    assert [e["summary"] for e in added if e["kind"] == "input"] == [
        "INV-2 issued: 1250.00 EUR due 2026-03-03"
    ]


async def test_a_restart_in_the_middle_changes_nothing(dunning_settings) -> None:
    async with Reader(dunning_settings) as reader:
        app = create_app(SPEC, dunning_settings)
        async with running(app) as client:
            await client.put("/v1/admin/clock", json={"now": "2026-03-01T10:00:00Z"}, headers=ADMIN)
            await publish(dunning_settings, issued("INV-1", due=date(2026, 3, 3)))
            await known(client, "ACME-42")
            await move(client, day(date(2026, 3, 5)))
        first = await reader.drain_until(
            lambda seen: any(isinstance(e, DunningStageChanged) for e in seen)
        )
        app = create_app(SPEC, dunning_settings)
        async with running(app) as client:
            await client.put("/v1/admin/clock", json={"now": "2026-03-05T10:00:00Z"}, headers=ADMIN)
            await move(client, day(date(2026, 3, 5)))
            assert (await account(client))["stage"] == "overdue_1"
            assert await reader.drain() == []
            await move(client, day(date(2026, 3, 11)))
            later = await reader.drain_until(
                lambda seen: any(isinstance(e, DunningStageChanged) for e in seen)
            )
    # (The clock jumped past the reminder's days: the ladder starts at overdue_1.)
    assert [e.to_stage for e in first if isinstance(e, DunningStageChanged)] == ["overdue_1"]
    assert [e.to_stage for e in later if isinstance(e, DunningStageChanged)] == ["overdue_2"]


async def test_manual_clock_through_75_days_for_a_mixed_ledger(client, dunning_settings) -> None:
    due = date(2026, 3, 3)
    ledger = [
        issued("INV-ON", due=due, account="ON-TIME"),
        issued("INV-LATE", due=due, account="LATE"),
        issued("INV-PART", due=due, account="PARTIAL"),
        issued("INV-DISP", due=due, account="DISPUTED"),
        issued("INV-PROM", due=due, account="PROMISED"),
        issued("INV-NEVER", due=due, account="NEVER"),
        disputed("INV-DISP", "1250.00", account="DISPUTED"),
    ]
    async with Reader(dunning_settings) as reader:
        await publish(dunning_settings, *ledger)
        for name in ("ON-TIME", "LATE", "PARTIAL", "DISPUTED", "PROMISED", "NEVER"):
            await known(client, name)
        events_by_day = {
            date(2026, 3, 2): [paid("P-ON", ("INV-ON", "1250.00"), account="ON-TIME")],
            date(2026, 3, 12): [paid("P-PART", ("INV-PART", "500.00"), account="PARTIAL")],
            date(2026, 3, 20): [paid("P-LATE", ("INV-LATE", "1250.00"), account="LATE")],
        }
        today = date(2026, 3, 1)
        while today <= date(2026, 5, 15):  # 75 days
            await move(client, day(today))
            if today == date(2026, 3, 6):
                response = await client.post(
                    "/v1/accounts/PROMISED/promise-to-pay",
                    json={"amount": "1250.00", "currency": "EUR", "promised_date": "2026-03-25"},
                    headers={**ACME, "X-Actor": "collector:jo"},
                )
                assert response.status_code == 201, response.text
            for event in events_by_day.get(today, []):
                await publish(dunning_settings, event)
                name = event.account_id

                async def applied(name: str = name) -> bool:
                    timeline = await client.get(f"/v1/accounts/{name}/timeline", headers=ACME)
                    return any("payment" in e["summary"] for e in timeline.json()["items"])

                await until(applied, what=f"payment of {name}")
            today += timedelta(days=1)
        out = await reader.drain_until(
            lambda seen: sum(isinstance(e, CollectionsHandoffRequested) for e in seen) >= 3
        )
    stages = {
        a: (await account(client, a))["stage"]
        for a in ("ON-TIME", "LATE", "PARTIAL", "DISPUTED", "PROMISED", "NEVER")
    }
    assert stages == {
        "ON-TIME": "current",
        "LATE": "current",
        "PARTIAL": "collections",
        "DISPUTED": "current",  # wholly disputed before anything was due: silent
        "PROMISED": "collections",
        "NEVER": "collections",
    }
    handoffs = sorted(e.account_id for e in out if isinstance(e, CollectionsHandoffRequested))
    assert handoffs == ["NEVER", "PARTIAL", "PROMISED"]
    notices = [e for e in out if isinstance(e, NotificationRequested)]
    # One consolidated notice per step and channel, never two for the same step.
    keys = [(n.account_id, n.stage, n.channel, n.stage_sequence) for n in notices]
    assert len(keys) == len(set(keys))
    assert not [n for n in notices if n.account_id == "DISPUTED"]
    assert {n.template for n in notices if n.account_id == "LATE"} >= {"overdue_2", "thank_you"}
    broken = [e for e in out if e.event_type == "PromiseToPayBroken"]
    assert [e.account_id for e in broken] == ["PROMISED"]


async def test_each_account_runs_on_its_segment_policy(client, dunning_settings) -> None:
    await publish(
        dunning_settings,
        issued("INV-S", due=date(2026, 3, 3), account="STANDARD"),
        issued("INV-H", due=date(2026, 3, 3), account="RISKY", segment="high_risk"),
        issued("INV-K", due=date(2026, 3, 3), account="KEY", segment="strategic"),
    )
    for name in ("STANDARD", "RISKY", "KEY"):
        await known(client, name)
    for d in range(3, 12):
        await move(client, day(date(2026, 3, d)))
    stages = {a: (await account(client, a))["stage"] for a in ("STANDARD", "RISKY", "KEY")}
    # 8 days past due: standard's overdue_2 (from 8 days), high_risk's overdue_2 (from 5;
    # its overdue_3 comes at 10), strategic's overdue_1 (from 5; its overdue_2 at 15).
    assert stages == {"STANDARD": "overdue_2", "RISKY": "overdue_2", "KEY": "overdue_1"}
    assert (await account(client, "RISKY"))["segment"] == "high_risk"
