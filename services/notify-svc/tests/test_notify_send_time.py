"""The stage order and the contact cap hold at send time, also for a notice taken over
from a dead instance long after it was requested: real SMTP server, real bus, the
service's manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from notify_fixtures import (
    ACME,
    START,
    SmtpServer,
    publish,
    published,
    settled,
    three_invoices,
    until,
)
from pydantic import ValidationError

from dunning_events import NotificationSuppressed
from dunning_runtime.app import create_app
from notify_svc.main import SPEC
from notify_svc.settings import NotifySettings
from tests.support.fixtures import ADMIN, running

DAY_2 = "2026-03-17T09:00:00Z"
DAY_2_AT = datetime(2026, 3, 17, 9, tzinfo=UTC)
DAY_3 = "2026-03-18T09:00:00Z"
DAY_5 = "2026-03-20T09:00:00Z"
DAY_6 = "2026-03-21T09:00:00Z"


def reminder() -> Any:
    return three_invoices(
        "en",
        notification_id="NTF-REM",
        stage="reminder",
        stage_sequence=1,
        template="reminder",
        contact_cap_days=3,
    )


def overdue_1() -> Any:
    return three_invoices(
        "en", notification_id="NTF-OD1", stage="overdue_1", stage_sequence=2, contact_cap_days=3
    )


@pytest.fixture
async def crashing(
    notify_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """notify-svc whose first attempt at the reminder dies after recording that the send
    begins (the process was killed): the notice stays leased until the lease runs out,
    then a later pass takes it over."""
    from notify_svc.workers import Delivery

    original = Delivery._begin
    died: list[str] = []

    async def die_once(self: Delivery, row: Any, *args: Any) -> Any:
        begun = await original(self, row, *args)
        if row["notification_id"] == "NTF-REM" and not died:
            died.append(row["notification_id"])
            raise RuntimeError("the process died as the send began")
        return begun

    monkeypatch.setattr(Delivery, "_begin", die_once)
    # A short lease (more than an attempt plus the backoff), so the take-over comes soon.
    settings = notify_settings.model_copy(
        update={"smtp_timeout_s": 0.5, "delivery_backoff_max_s": 0.1, "delivery_lease_s": 1.0}
    )
    async with running(create_app(SPEC, settings)) as client:
        client.settings = settings  # type: ignore[attr-defined]
        await client.put("/v1/admin/clock", json={"now": START}, headers=ADMIN)
        await publish(settings, reminder())

        async def interrupted() -> bool:
            response = await client.get("/v1/notifications/NTF-REM", headers=ACME)
            return response.status_code == 200 and response.json()["attempts"] >= 1

        await until(interrupted, what="the reminder's interrupted attempt")
        yield client


async def set_clock(client: httpx.AsyncClient, now: str) -> None:
    assert (await client.put("/v1/admin/clock", json={"now": now}, headers=ADMIN)).is_success


async def test_a_notice_taken_over_late_never_goes_out_after_the_next_stage_nor_within_the_cap(
    crashing: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    client = crashing
    # Three days on (the manual clock) overdue_1 is requested while the reminder still
    # waits for its dead instance's lease to run out.
    await set_clock(client, DAY_3)
    await publish(client.settings, overdue_1())  # type: ignore[attr-defined]
    taken_over = await settled(client, "NTF-REM")
    if taken_over["status"] == "suppressed":
        # overdue_1 went out before the take-over: the reminder never follows it.
        assert taken_over["reason"] == "obsolete" and "overdue_1" in taken_over["error"]
        assert (await settled(client, "NTF-OD1"))["status"] == "sent"
        assert [m["X-Dunning-Notification-Id"] for m in smtp.messages] == ["NTF-OD1"]
        return
    # Usually the take-over comes first (the dying instance's send counts as under way
    # until its lease ends): the reminder goes out, and overdue_1 waits the 3-day cap.
    assert taken_over["status"] == "sent" and taken_over["possible_duplicate"] is True

    async def held() -> bool:
        await client.post("/v1/admin/tick", headers=ADMIN)
        response = await client.get("/v1/notifications/NTF-OD1", headers=ACME)
        return response.status_code == 200 and response.json()["due_at"] == DAY_6

    await until(held, what="overdue_1 held by the contact cap")
    assert [m["X-Dunning-Notification-Id"] for m in smtp.messages] == ["NTF-REM"]
    await set_clock(client, DAY_5)
    await client.post("/v1/admin/tick", headers=ADMIN)
    assert (await client.get("/v1/notifications/NTF-OD1", headers=ACME)).json()[
        "status"
    ] == "pending"
    await set_clock(client, DAY_6)
    await client.post("/v1/admin/tick", headers=ADMIN)
    assert (await settled(client, "NTF-OD1"))["sent_at"] == DAY_6
    assert [m["X-Dunning-Notification-Id"] for m in smtp.messages] == ["NTF-REM", "NTF-OD1"]


async def test_a_notice_overtaken_by_the_next_stages_notice_is_never_sent(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    # The reminder waits for its not_before; overdue_1 goes out meanwhile.
    await publish(notify_settings, reminder().model_copy(update={"not_before": DAY_2_AT}))
    await publish(notify_settings, overdue_1())
    assert (await settled(client, "NTF-OD1"))["status"] == "sent"
    await set_clock(client, DAY_2)
    await client.post("/v1/admin/tick", headers=ADMIN)
    overtaken = await settled(client, "NTF-REM")
    assert overtaken["status"] == "suppressed" and overtaken["reason"] == "obsolete"
    assert "overdue_1" in overtaken["error"]
    assert [m["X-Dunning-Notification-Id"] for m in smtp.messages] == ["NTF-OD1"]
    events = await published(notify_settings, 2)
    suppressed = [e.data for e in events if isinstance(e.data, NotificationSuppressed)]
    assert [(s.notification_id, s.reason) for s in suppressed] == [("NTF-REM", "obsolete")]


def test_the_lease_must_cover_an_attempt_and_the_backoff_after_it() -> None:
    with pytest.raises(ValidationError, match="delivery_lease_s"):
        NotifySettings(
            service_name="notify-svc",
            delivery_lease_s=20,
            smtp_timeout_s=30,
            delivery_backoff_max_s=60,
        )
    accepted = NotifySettings(
        service_name="notify-svc",
        delivery_lease_s=20,
        smtp_timeout_s=10,
        http_timeout_s=5,
        delivery_backoff_max_s=5,
    )
    assert accepted.delivery_lease_s == 20
