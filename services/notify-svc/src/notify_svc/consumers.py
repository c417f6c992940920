"""notify-svc's event handlers: record each ``NotificationRequested`` (the idempotency
key, before anything is sent) and follow ``DunningStageChanged``.

One subscription reads both topics; a chunk is one partition of one of them. A
chunk locks its accounts, loads what its decisions need with one query per kind
(existing notices, stages, opt-outs, profiles, template overrides), decides each
request through ``domain``, renders it, and writes all rows and events at once.
Nothing is sent here: the consumer commits quickly and ``delivery`` sends, so a
slow or failing provider never holds a partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, event, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import (
    DunningStageChanged,
    Envelope,
    NotificationRequested,
    topics,
)
from dunning_runtime.app import Runtime
from dunning_runtime.consumer import Subscription
from dunning_runtime.locks import lock_accounts
from dunning_runtime.outbox import Outbox
from notify_svc import domain, events, rendering, storage
from notify_svc.delivery import count_suppressed_on_commit
from notify_svc.settings import NotifySettings
from notify_svc.storage import account_stages, notifications

GROUP = "notify-svc"


async def apply_stage_changes(
    session: AsyncSession,
    outbox: Outbox,
    changes: list[tuple[Envelope, DunningStageChanged]],
    now: datetime,
) -> None:
    """Keep the latest stage per account and the last return to ``current``; suppress
    the account's pending notices that such a return made obsolete."""
    keys = {(e.tenant, c.account_id) for e, c in changes}
    known = await storage.stages_of(session, keys)
    new: dict[tuple[str, str], dict[str, Any]] = {}
    changed: set[tuple[str, str]] = set()
    for envelope, change in changes:
        key = (envelope.tenant, change.account_id)
        row = known.get(key) or new.get(key)
        if row is None:
            row = new[key] = {
                "tenant": key[0],
                "account_id": key[1],
                "sequence": 0,
                "stage": change.to_stage,
                "current_sequence": 0,
                "updated_at": now,
            }
        elif key in known:
            changed.add(key)
        if change.sequence > row["sequence"]:
            row["sequence"], row["stage"] = change.sequence, change.to_stage
        if change.to_stage == "current" and change.sequence > row["current_sequence"]:
            row["current_sequence"] = change.sequence
        row["updated_at"] = now
    if new:
        await session.execute(insert(account_stages), list(new.values()))
    if changed:
        await session.execute(
            update(account_stages)
            .where(
                account_stages.c.tenant == bindparam("k_tenant"),
                account_stages.c.account_id == bindparam("k_account"),
            )
            .values(
                sequence=bindparam("v_sequence"),
                stage=bindparam("v_stage"),
                current_sequence=bindparam("v_current"),
                updated_at=bindparam("v_updated"),
            ),
            [
                {
                    "k_tenant": t,
                    "k_account": a,
                    "v_sequence": known[(t, a)]["sequence"],
                    "v_stage": known[(t, a)]["stage"],
                    "v_current": known[(t, a)]["current_sequence"],
                    "v_updated": now,
                }
                for t, a in sorted(changed)
            ],
        )
    stages = {**known, **new}
    obsolete = [
        notice
        for notice in await storage.pending_of_accounts(session, keys)
        # A send in flight cannot be called back; its outcome is recorded as it ends.
        if notice["send_started_at"] is None
        and domain.obsolete_after(
            notice["stage_sequence"],
            "current",
            stages[(notice["tenant"], notice["account_id"])]["current_sequence"],
        )
    ]
    suppressed_on: list[str] = []
    for notice in obsolete:
        current = stages[(notice["tenant"], notice["account_id"])]["current_sequence"]
        detail = (
            f"requested at stage change {notice['stage_sequence']} ({notice['stage']}); the "
            f"account returned to current at stage change {current}"
        )
        result = await session.execute(
            update(notifications)
            .where(
                notifications.c.seq == notice["seq"],
                # Re-checked as the row is written: a send that began since it was read
                # wins, and its outcome is recorded instead.
                notifications.c.status == "pending",
                notifications.c.send_started_at.is_(None),
            )
            .values(status="suppressed", reason="obsolete", error=detail, updated_at=now)
        )
        if not getattr(result, "rowcount", 0):
            continue
        suppressed = events.suppressed(notice, "obsolete", detail)
        await outbox.add(session, events.envelope(notice["tenant"], suppressed, now, notice))
        suppressed_on.append(notice["channel"])
    count_suppressed_on_commit(session, suppressed_on)


async def record_requests(
    session: AsyncSession,
    outbox: Outbox,
    settings: NotifySettings,
    requests: list[tuple[Envelope, NotificationRequested]],
    now: datetime,
) -> int:
    """Record every request not seen before (by tenant and notification_id): suppressed,
    failed (its template cannot render) or pending for delivery, rendered. Returns how
    many are pending."""
    keys = {(e.tenant, r.notification_id) for e, r in requests}
    seen = await storage.existing_notifications(session, keys)
    fresh: list[tuple[Envelope, NotificationRequested]] = []
    for envelope, request in requests:
        key = (envelope.tenant, request.notification_id)
        if key not in seen:  # a redelivered command (a new event id) sends nothing
            seen.add(key)
            fresh.append((envelope, request))
    if not fresh:
        return 0
    tenants = {e.tenant for e, _ in fresh}
    stages = await storage.stages_of(session, {(e.tenant, r.account_id) for e, r in fresh})
    profiles = await storage.profiles_of(session, tenants)
    overrides = await storage.template_overrides(session, tenants)
    addresses: dict[tuple[str, str], str | None] = {}
    for envelope, request in fresh:
        webhook = profiles.get(envelope.tenant, {}).get("webhook_url")
        address = domain.address_for(request.channel, request.recipient, webhook)
        addresses[(envelope.tenant, request.notification_id)] = address
    contacts = {
        (e.tenant, normalized)
        for (e, r) in fresh
        for a in [addresses[(e.tenant, r.notification_id)], *(c.email for c in r.cc)]
        if r.channel != "webhook" and (normalized := domain.contact_key(a)) is not None
    }
    opted = await storage.opted_out(session, contacts)
    rows: list[dict[str, Any]] = []
    staged: list[Envelope] = []
    pending = 0
    suppressed_on: list[str] = []
    for envelope, request in fresh:
        tenant = envelope.tenant
        address = addresses[(tenant, request.notification_id)]
        normalized = domain.contact_key(address) if request.channel != "webhook" else None
        channels = frozenset(c for t, a, c in opted if (t, a) == (tenant, normalized))
        stage = stages.get((tenant, request.account_id))
        decision = domain.suppression(
            request,
            address=address,
            opted_out_channels=channels,
            current_sequence=stage["current_sequence"] if stage else 0,
        )
        cc = [
            c.email
            for c in request.cc
            if request.channel == "email"
            and c.email
            and (tenant, domain.contact_key(c.email), "email") not in opted
        ]
        row = _row(envelope, request, settings, now, address, cc)
        if decision is not None:
            row.update(status="suppressed", reason=decision.reason, error=decision.detail)
            suppressed_on.append(request.channel)
            staged.append(
                events.envelope(
                    tenant, events.suppressed(row, decision.reason, decision.detail), now, row
                )
            )
        else:
            context = rendering.build_context(tenant, request, profiles.get(tenant, {}))
            try:
                rendered = rendering.render(
                    request.template, request.locale, context, overrides.get(tenant, {})
                )
            except rendering.TemplateProblem as exc:
                error = f"template {request.template} cannot be rendered: {exc}"
                row.update(status="failed", permanent=True, error=error, attempts=0)
                staged.append(
                    events.envelope(tenant, events.failed(row, error, 1, permanent=True), now, row)
                )
            else:
                row.update(
                    subject=rendered.subject,
                    body_text=rendered.text,
                    body_html=rendered.html if request.channel == "email" else None,
                    body_sms=rendered.sms if request.channel == "sms" else None,
                )
                pending += 1
        rows.append(row)
    await session.execute(insert(notifications), rows)
    if staged:
        await outbox.add(session, *staged)
    count_suppressed_on_commit(session, suppressed_on)
    return pending


def _row(
    envelope: Envelope,
    request: NotificationRequested,
    settings: NotifySettings,
    now: datetime,
    address: str | None,
    cc: list[str],
) -> dict[str, Any]:
    return {
        "tenant": envelope.tenant,
        "notification_id": request.notification_id,
        "account_id": request.account_id,
        "account_name": request.account_name,
        "stage": request.stage,
        "stage_sequence": request.stage_sequence,
        "channel": request.channel,
        "template": request.template,
        "locale": request.locale,
        "to_address": address,
        "cc": cc,
        "subject": None,
        "body_text": None,
        "body_html": None,
        "body_sms": None,
        "message_id": domain.message_id(
            envelope.tenant, request.notification_id, settings.message_id_domain
        ),
        "request": request.model_dump(mode="json"),
        "traceparent": envelope.traceparent,
        "tracestate": envelope.tracestate,
        "status": "pending",
        "reason": None,
        "error": None,
        "permanent": False,
        "attempts": 0,
        "due_at": domain.due_at(request, now),
        "possible_duplicate": False,
        "created_at": now,
        "updated_at": now,
    }


def commands(runtime: Runtime, wake: Callable[[], None]) -> Subscription:
    """Record requests and follow stage changes; ``wake`` the delivery worker after each
    chunk that left a notice pending."""
    settings = runtime.settings
    assert isinstance(settings, NotifySettings)

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        now = runtime.clock.now()
        requests = [(e, e.data) for e in envelopes if isinstance(e.data, NotificationRequested)]
        changes = [(e, e.data) for e in envelopes if isinstance(e.data, DunningStageChanged)]
        accounts = {(e.tenant, d.account_id) for e, d in [*requests, *changes]}
        if not accounts:
            return
        await lock_accounts(session, accounts)
        if changes:
            await apply_stage_changes(session, runtime.outbox, changes, now)
        if requests and await record_requests(session, runtime.outbox, settings, requests, now):
            event.listen(session.sync_session, "after_commit", lambda _s: wake(), once=True)

    return Subscription(
        GROUP, (topics.DUNNING_COMMANDS, topics.DUNNING_EVENTS), batch_handler=handle
    )
