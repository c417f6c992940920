"""The consumer's use case: record each ``NotificationRequested`` (the idempotency
key, before anything is sent) and follow ``DunningStageChanged``.

A chunk locks its accounts, loads what its decisions need with one query per kind
(existing notices, stages, opt-outs, profiles, template overrides), decides each
request through ``domain``, renders it, and writes all rows and events at once.
Nothing is sent here: the consumer commits quickly and the delivery worker sends, so a
slow or failing provider never holds a partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import DunningStageChanged, Envelope, NotificationRequested
from dunning_runtime.locks import lock_accounts
from dunning_runtime.outbox import Outbox
from notify_svc import domain, events, rendering
from notify_svc.domain import StageSeen
from notify_svc.metrics import count_suppressed_on_commit
from notify_svc.settings import NotifySettings
from notify_svc.storage import notices, tenants

Requested = tuple[Envelope, NotificationRequested]


async def apply(
    session: AsyncSession,
    outbox: Outbox,
    settings: NotifySettings,
    envelopes: Sequence[Envelope],
    now: datetime,
) -> int:
    """Apply one chunk of either topic: stage changes first, then requests, under the
    locks of their accounts. Returns how many notices it left pending for delivery."""
    requests = [(e, e.data) for e in envelopes if isinstance(e.data, NotificationRequested)]
    changes = [(e, e.data) for e in envelopes if isinstance(e.data, DunningStageChanged)]
    accounts = {(e.tenant, d.account_id) for e, d in [*requests, *changes]}
    if not accounts:
        return 0
    await lock_accounts(session, accounts)
    if changes:
        await apply_stage_changes(session, outbox, changes, now)
    if requests:
        return await record_requests(session, outbox, settings, requests, now)
    return 0


async def apply_stage_changes(
    session: AsyncSession,
    outbox: Outbox,
    changes: list[tuple[Envelope, DunningStageChanged]],
    now: datetime,
) -> None:
    """Keep the latest stage per account and the last return to ``current``; suppress
    the account's pending notices that such a return made obsolete."""
    keys = {(e.tenant, c.account_id) for e, c in changes}
    known = await notices.stages_of(session, keys)
    new: dict[tuple[str, str], StageSeen] = {}
    changed: dict[tuple[str, str], StageSeen] = {}
    for envelope, change in changes:
        key = (envelope.tenant, change.account_id)
        into = changed if key in known else new
        seen = into.get(key) or known.get(key)
        into[key] = domain.follow_stage(seen, change.sequence, change.to_stage)
    await notices.insert_stages(session, new, now)
    await notices.update_stages(session, changed, now)
    stages = {**known, **changed, **new}
    suppressed_on: list[str] = []
    for notice in await notices.pending_of_accounts(session, keys):
        suppression = domain.obsoleted_by_return(
            notice["stage_sequence"],
            notice["stage"],
            sending=notice["send_started_at"] is not None,
            current_sequence=stages[(notice["tenant"], notice["account_id"])].current_sequence,
        )
        if suppression is None or not await notices.suppress_unstarted(
            session, notice["seq"], suppression.reason, suppression.detail, now
        ):
            continue
        suppressed = events.suppressed(notice, suppression.reason, suppression.detail)
        await outbox.add(session, events.envelope(notice["tenant"], suppressed, now, notice))
        suppressed_on.append(notice["channel"])
    count_suppressed_on_commit(session, suppressed_on)


@dataclass(frozen=True)
class _Known:
    """What the decisions on a chunk's fresh requests read, loaded once per chunk."""

    stages: dict[tuple[str, str], StageSeen]
    profiles: dict[str, dict[str, Any]]
    overrides: dict[str, dict[str, dict[str, str]]]
    addresses: dict[tuple[str, str], str | None]
    opted: set[tuple[str, str, str]]

    def opted_out_of(self, tenant: str, normalized: str | None) -> frozenset[str]:
        """The channels a tenant's contact opted out of."""
        return frozenset(c for t, a, c in self.opted if (t, a) == (tenant, normalized))


async def _fresh(session: AsyncSession, requests: list[Requested]) -> list[Requested]:
    """The requests not recorded before (by tenant and notification_id), first of each."""
    keys = {(e.tenant, r.notification_id) for e, r in requests}
    seen = await notices.existing_notifications(session, keys)
    fresh: list[Requested] = []
    for envelope, request in requests:
        key = (envelope.tenant, request.notification_id)
        if key not in seen:  # a redelivered command (a new event id) sends nothing
            seen.add(key)
            fresh.append((envelope, request))
    return fresh


async def _load(session: AsyncSession, fresh: list[Requested]) -> _Known:
    tenant_ids = {e.tenant for e, _ in fresh}
    stages = await notices.stages_of(session, {(e.tenant, r.account_id) for e, r in fresh})
    profiles = await tenants.profiles_of(session, tenant_ids)
    overrides = await tenants.template_overrides(session, tenant_ids)
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
    opted = await tenants.opted_out(session, contacts)
    return _Known(stages, profiles, overrides, addresses, opted)


async def record_requests(
    session: AsyncSession,
    outbox: Outbox,
    settings: NotifySettings,
    requests: list[Requested],
    now: datetime,
) -> int:
    """Record every request not seen before (by tenant and notification_id): suppressed,
    failed (its template cannot render) or pending for delivery, rendered. Returns how
    many are pending."""
    fresh = await _fresh(session, requests)
    if not fresh:
        return 0
    known = await _load(session, fresh)
    rows: list[dict[str, Any]] = []
    staged: list[Envelope] = []
    suppressed_on: list[str] = []
    for envelope, request in fresh:
        row, event = _recorded(envelope, request, known, settings, now)
        if row["status"] == "suppressed":
            suppressed_on.append(request.channel)
        if event is not None:
            staged.append(event)
        rows.append(row)
    await notices.insert_notifications(session, rows)
    if staged:
        await outbox.add(session, *staged)
    count_suppressed_on_commit(session, suppressed_on)
    return sum(1 for row in rows if row["status"] == "pending")


def _recorded(
    envelope: Envelope,
    request: NotificationRequested,
    known: _Known,
    settings: NotifySettings,
    now: datetime,
) -> tuple[dict[str, Any], Envelope | None]:
    """A fresh request's row (suppressed, failed or pending and rendered) and the event
    it publishes at once, if any."""
    tenant = envelope.tenant
    address = known.addresses[(tenant, request.notification_id)]
    normalized = domain.contact_key(address) if request.channel != "webhook" else None
    stage = known.stages.get((tenant, request.account_id))
    decision = domain.suppression(
        request,
        address=address,
        opted_out_channels=known.opted_out_of(tenant, normalized),
        current_sequence=stage.current_sequence if stage else 0,
    )
    refused = {a for t, a, c in known.opted if t == tenant and c == "email"}
    cc = domain.copies_to(request.channel, (c.email for c in request.cc), refused)
    row = _row(envelope, request, settings, now, address, cc)
    if decision is not None:
        row.update(status="suppressed", reason=decision.reason, error=decision.detail)
        event = events.suppressed(row, decision.reason, decision.detail)
        return row, events.envelope(tenant, event, now, row)
    context = rendering.build_context(tenant, request, known.profiles.get(tenant, {}))
    try:
        rendered = rendering.render(
            request.template, request.locale, context, known.overrides.get(tenant, {})
        )
    except rendering.TemplateProblem as exc:
        error = f"template {request.template} cannot be rendered: {exc}"
        row.update(status="failed", permanent=True, error=error, attempts=0)
        failed = events.failed(row, error, 1, permanent=True)
        return row, events.envelope(tenant, failed, now, row)
    row.update(
        subject=rendered.subject,
        body_text=rendered.text,
        body_html=rendered.html if request.channel == "email" else None,
        body_sms=rendered.sms if request.channel == "sms" else None,
    )
    return row, None


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
