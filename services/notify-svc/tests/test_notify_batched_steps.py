"""Begins and outcomes in one transaction (``commands.batched.record_steps``) decide and
write what the two separate transactions of before did: the same results, the same
rows and the same events, on the active backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from notify_fixtures import ACME, publish, three_invoices, until

from dunning_runtime.app import Runtime
from notify_svc.commands import batched
from notify_svc.settings import NotifySettings
from notify_svc.storage import notices
from tests.support.fixtures import ADMIN

LATER = datetime(2026, 3, 16, 9, tzinfo=UTC)  # not due before: the worker leaves them
#: What a notice's row says about its delivery (not its ids, nor the wall-clock times).
COLUMNS = (
    "status",
    "attempts",
    "due_at",
    "lease_owner",
    "possible_duplicate",
    "error",
    "reason",
    "permanent",
    "sent_at",
    "provider_message_id",
    "updated_at",
)


async def _claimed_pair(client: Any, settings: Any, run: str) -> list[Any]:
    """Two notices of one account (stages 1 and 2, a contact cap of 3 days), recorded
    and leased to "tester"."""
    account = f"ACC-{run}"
    pair = [
        three_invoices(
            "en",
            notification_id=f"NTF-{run}-{n}",
            account_id=account,
            stage=stage,
            stage_sequence=n,
            template=stage,
            contact_cap_days=3,
            not_before=LATER,
        )
        for n, stage in ((1, "reminder"), (2, "overdue_1"))
    ]
    await publish(settings, *pair)
    ids = [p.notification_id for p in pair]

    async def recorded() -> bool:
        found = [await client.get(f"/v1/notifications/{n}", headers=ACME) for n in ids]
        return all(r.status_code == 200 for r in found)

    await until(recorded, what="both recorded")
    runtime: Runtime[NotifySettings] = client.app.state.runtime
    wall = datetime.now(UTC)
    async with runtime.database.transaction() as session:
        seqs = [(await notices.notice_of(session, "acme", n))["seq"] for n in ids]  # type: ignore[index]
        rows = await notices.claim(session, seqs, "tester", wall, wall + timedelta(seconds=60))
    return sorted(rows, key=lambda r: r["stage_sequence"])


async def _state(runtime: Runtime[NotifySettings], rows: list[Any], run: str) -> list[Any]:
    async with runtime.database.transaction() as session:
        found = [await notices.notice_of(session, "acme", r["notification_id"]) for r in rows]
    return [
        {
            "send_begun": f["send_started_at"] is not None,
            "leased": f["lease_until"] is not None,
            **{c: f[c] for c in COLUMNS},
        }
        for f in found
        if f is not None
    ]


def _events(staged: list[Any], run: str) -> list[Any]:
    return [
        (e.type, e.subject.replace(run, "*"), e.data.model_dump_json().replace(run, "*"))
        for e in staged
    ]


async def test_an_outcome_and_a_begin_in_one_transaction_equal_two_transactions(
    client: Any, notify_settings: Any, monkeypatch: Any
) -> None:
    """The first notice of an account is sent; the second begins as its outcome is
    recorded. Apart, then together: the contact cap holds the second either way, and
    the rows and the NotificationSent are the same."""
    runtime: Runtime[NotifySettings] = client.app.state.runtime
    staged: list[Any] = []
    add = runtime.outbox.add

    async def recording(session: Any, *envelopes: Any) -> None:
        staged.extend(envelopes)
        await add(session, *envelopes)

    monkeypatch.setattr(runtime.outbox, "add", recording)
    apart = await _claimed_pair(client, notify_settings, "APART")
    together = await _claimed_pair(client, notify_settings, "TOGETHER")
    await client.put("/v1/admin/clock", json={"now": "2026-03-16T09:00:00Z"}, headers=ADMIN)
    wall = datetime.now(UTC)
    for first, _ in (apart, together):
        begun = await batched.begin_many(
            runtime, "tester", 60, [batched.Beginning(first, 1, wall, False)]
        )
        assert begun == ["begun"]

    staged.clear()
    sent = batched.Outcome(apart[0], sent=True, provider_id="p-1", attempts=1)
    assert await batched.record_outcomes(runtime, "tester", [sent]) == [None]
    second = batched.Beginning(apart[1], 1, wall, False)
    assert await batched.begin_many(runtime, "tester", 60, [second]) == ["held"]
    apart_events, apart_rows = _events(staged, "APART"), await _state(runtime, apart, "APART")

    staged.clear()
    steps: list[batched.Beginning | batched.Outcome] = [
        batched.Outcome(together[0], sent=True, provider_id="p-1", attempts=1),
        batched.Beginning(together[1], 1, wall, False),
    ]
    assert await batched.record_steps(runtime, "tester", 60, steps) == [None, "held"]
    together_events = _events(staged, "TOGETHER")
    together_rows = await _state(runtime, together, "TOGETHER")

    assert together_rows == apart_rows
    assert [r["status"] for r in apart_rows] == ["sent", "pending"]
    assert together_events == apart_events
    assert [t for t, _, _ in apart_events] == ["dunning.NotificationSent.v1"]


async def test_a_begin_in_a_batch_with_outcomes_of_others_is_not_written_when_not_owned(
    client: Any, notify_settings: Any
) -> None:
    """The lease check covers every step of the batch: a notice leased to another
    instance gets no outcome, and its begin is ``not_begun``, beside one that is."""
    runtime: Runtime[NotifySettings] = client.app.state.runtime
    first, second = await _claimed_pair(client, notify_settings, "OWNED")
    await client.put("/v1/admin/clock", json={"now": "2026-03-16T09:00:00Z"}, headers=ADMIN)
    wall = datetime.now(UTC)
    steps: list[batched.Beginning | batched.Outcome] = [
        batched.Outcome(first, sent=True, provider_id="p-1", attempts=1),
        batched.Beginning(second, 1, wall, False),
    ]
    assert await batched.record_steps(runtime, "someone-else", 60, steps) == [None, "not_begun"]
    rows = await _state(runtime, [first, second], "OWNED")
    assert [(r["status"], r["attempts"], r["send_begun"]) for r in rows] == [
        ("pending", 0, False),
        ("pending", 0, False),
    ]
