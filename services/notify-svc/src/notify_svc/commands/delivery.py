"""The delivery worker's bookkeeping around each send, one short transaction a step:
claiming due notices under a lease, the send-time rule, opening a task, recording a
refused attempt, and the message a notice sends. Recording that an attempt begins and
recording its outcome go in batches (``commands.batched``), under the same rules.

Every write after the claim checks the lease (``storage.notices.update_owned``), so an
instance that lost a notice records nothing. Leases are wall-clock time: they wait for
remote servers, not for the service's (possibly manual) business clock.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import formataddr, parseaddr
from typing import Any, Literal

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.app import Runtime
from dunning_runtime.locks import lock_account
from notify_svc import domain, events
from notify_svc.channels import Outgoing
from notify_svc.channels.task import task_row
from notify_svc.metrics import SENDS, count_suppressed_on_commit
from notify_svc.settings import NotifySettings
from notify_svc.storage import notices, tasks, tenants

#: The name delivery's log lines have always carried (docs/metrics.md shows it).
log = logging.getLogger("notify_svc.delivery")

#: What came of recording that a send begins: it began, or it did not (the send-time
#: rule held or superseded it, or the notice is no longer this instance's).
Begun = Literal["begun", "held", "superseded", "not_begun"]


def wall_now() -> datetime:
    """Wall-clock time: leases and backoff wait for remote servers, not for the service's
    (possibly manual) business clock."""
    return datetime.now(UTC)


async def claim_due(
    runtime: Runtime[NotifySettings], owner: str, room: int, lease_s: float, busy: Container[int]
) -> tuple[Sequence[RowMapping], dict[str, dict[str, Any]]]:
    """Lease up to ``room`` notices due at the service clock to ``owner`` (those in
    ``busy`` are still being sent here and are left alone); returns them and their
    tenants' profiles."""
    wall = wall_now()
    until = wall + timedelta(seconds=lease_s)
    async with runtime.database.transaction() as session:
        seqs = await notices.due_seqs(session, runtime.clock.now(), wall, room)
        seqs = [s for s in seqs if s not in busy]
        rows = await notices.claim(session, seqs, owner, wall, until)
        profiles = await tenants.profiles_of(session, {r["tenant"] for r in rows})
    return rows, profiles


def at_send_time(
    row: RowMapping, contacts: Iterable[domain.ContactMade], now: datetime
) -> domain.SendTime:
    """``domain.at_send_time`` for a stored notice, against the account's ``contacts``."""
    request = row["request"]
    not_before = request.get("not_before")
    return domain.at_send_time(
        stage_sequence=row["stage_sequence"],
        stage=row["stage"],
        not_before=datetime.fromisoformat(not_before) if not_before else None,
        contact_cap_days=int(request.get("contact_cap_days") or 0),
        contacts=contacts,
        now=now,
    )


async def _gate(
    runtime: Runtime[NotifySettings],
    session: AsyncSession,
    row: RowMapping,
    owner: str,
    wall: datetime,
) -> Begun:
    """The stage order and the contact cap, checked again as the send begins (under
    the account's lock, so two notices of one account pass it one at a time): a
    notice taken over late, or retried for long, must not go out after the next
    stage's notice, nor within the cap of another. "begun" lets it go ahead."""
    now = runtime.clock.now()
    await lock_account(session, row["tenant"], row["account_id"])
    decision = at_send_time(row, await notices.contacts_of(session, row, wall, now), now)
    if isinstance(decision, domain.Send):
        return "begun"
    if isinstance(decision, domain.Hold):
        # Back to the queue, due again when the hold ends; an interrupted send keeps
        # its send_started_at, so it still goes out marked as a possible duplicate.
        # The retry budget starts again then: the hold was no failure to deliver.
        await notices.update_owned(
            session,
            row["seq"],
            owner,
            due_at=decision.until,
            first_attempt_at=None,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
        log.info("notify-svc: %s held: %s", row["notification_id"], decision.why)
        return "held"
    if await notices.update_owned(
        session,
        row["seq"],
        owner,
        status="suppressed",
        reason="obsolete",
        error=decision.detail,
        send_started_at=None,
        lease_until=None,
        updated_at=now,
    ):
        event = events.suppressed(row, "obsolete", decision.detail)
        await runtime.outbox.add(session, events.envelope(row["tenant"], event, now, row))
        count_suppressed_on_commit(session, [row["channel"]])
    return "superseded"


async def record_attempt_failed(
    runtime: Runtime[NotifySettings], row: RowMapping, owner: str, error: str
) -> None:
    """The provider refused: nothing went out, so the next attempt is no duplicate."""
    async with runtime.database.transaction() as session:
        await notices.update_owned(
            session, row["seq"], owner, send_started_at=None, error=error[:2000]
        )


async def open_task(
    runtime: Runtime[NotifySettings], row: RowMapping, owner: str, message: Outgoing
) -> str:
    """Open the collector's task and record the notice as sent, in one transaction,
    once the send-time rule allows it; returns the outcome."""
    now = runtime.clock.now()
    async with runtime.database.transaction() as session:
        gate = await _gate(runtime, session, row, owner, wall_now())
        if gate != "begun":
            return gate
        if not await notices.update_owned(
            session,
            row["seq"],
            owner,
            status="sent",
            sent_at=now,
            attempts=row["attempts"] + 1,
            lease_until=None,
            updated_at=now,
        ):
            return "not_begun"
        await tasks.open_task(session, task_row(message, row, now))
        event = events.sent(row, now, row["notification_id"])
        await runtime.outbox.add(session, events.envelope(row["tenant"], event, now, row))
    SENDS.labels("task", "sent").inc()
    return "sent"


def outgoing(
    row: RowMapping | dict[str, Any],
    profile: dict[str, Any],
    settings: NotifySettings,
    now: datetime,
) -> Outgoing:
    """The message a stored notice sends: From the tenant's company name at the
    configured sender address, Reply-To the tenant's contact email."""
    display, address = parseaddr(settings.mail_from)
    name = profile.get("company_name") or display
    request = row["request"]
    return Outgoing(
        tenant=row["tenant"],
        notification_id=row["notification_id"],
        channel=row["channel"],
        to=row["to_address"] or "",
        cc=tuple(row["cc"] or ()),
        subject=row["subject"] or "",
        text=row["body_text"] or "",
        html=row["body_html"] or "",
        sms=row["body_sms"] or "",
        message_id=row["message_id"],
        sender=formataddr((name, address)) if name else address,
        reply_to=profile.get("email"),  # the defaults have no contact email
        date=now,
        payload={
            "type": "dunning.notification",
            "tenant": row["tenant"],
            "notification_id": row["notification_id"],
            "account_id": row["account_id"],
            "stage": row["stage"],
            "template": row["template"],
            "subject": row["subject"],
            "text": row["body_text"],
            "request": request,
        },
    )
