"""notify-svc's HTTP use cases: templates, the tenant profile, opt-outs and tasks.

Each runs in the caller's transaction; rule errors are ``domain.NotifyRuleError``s,
which the API maps to problems.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Money, NotificationRequested
from dunning_events.money import to_minor
from dunning_events.notifications import CollectorTaskCompleted
from dunning_events.samples import sample_event
from dunning_runtime.db import utc
from dunning_runtime.locks import lock_account
from dunning_runtime.outbox import Outbox
from notify_svc import domain, events, rendering, storage
from notify_svc.domain import Conflict, NotFound, NotifyRuleError
from notify_svc.models import (
    ContactIn,
    ContactOut,
    OptOut,
    ProfileIn,
    ProfileOut,
    TaskCompleteIn,
    TaskOut,
    TemplateOut,
    TemplatePreview,
)
from notify_svc.storage import opt_outs, profiles, tasks, templates
from notify_svc.views import task_view

# -- templates ---------------------------------------------------------------------


def sample_request(template: str, language: str) -> NotificationRequested:
    """A notice with every part a template can show (three invoices, a fee, a next step),
    for validating and previewing templates."""
    base = sample_event(NotificationRequested)
    first = base.invoices[0]
    invoices = [
        first.model_copy(update={"invoice_id": f"INV-100{n}", "number": f"2026-100{n}"})
        for n in (1, 2, 3)
    ]
    return base.model_copy(
        update={
            "template": template,
            "locale": language,
            "invoices": invoices,
            "total_overdue": [Money.of("3750.00", "EUR")],
            "total_open": [Money.of("3750.00", "EUR")],
            "fee": Money.of("40.00", "EUR"),
        }
    )


def key_of(key: str) -> tuple[str, str]:
    """The template name and language of a key; a 422 naming ``path.key`` otherwise."""
    try:
        return rendering.parse_key(key)
    except ValueError as exc:
        raise NotifyRuleError(str(exc), "path.key") from exc


def preview(
    tenant: str, key: str, overrides: dict[str, dict[str, str]], profile: dict[str, Any]
) -> TemplatePreview:
    """Render ``key`` with the sample notice; ``TemplateProblem`` names the part at fault."""
    name, language = key_of(key)
    template = "overdue_1" if name == rendering.LAYOUT else name
    request = sample_request(template, language)
    context = rendering.build_context(tenant, request, profile)
    rendered = rendering.render(template, language, context, overrides)
    return TemplatePreview(
        subject=rendered.subject, text=rendered.text, html=rendered.html, sms=rendered.sms
    )


async def _tenant_templates(
    session: AsyncSession, tenant: str
) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    overrides = (await storage.template_overrides(session, [tenant]))[tenant]
    profile = (await storage.profiles_of(session, [tenant])).get(tenant, {})
    return overrides, profile


async def get_template(session: AsyncSession, tenant: str, key: str) -> TemplateOut:
    """A template as it renders for the tenant: its parts and a preview."""
    key_of(key)
    overrides, profile = await _tenant_templates(session, tenant)
    return TemplateOut(
        key=key,
        parts=rendering.parts_of(key, overrides),
        overridden=sorted(overrides.get(key, {})),
        preview=preview(tenant, key, overrides, profile),
    )


async def put_template(
    session: AsyncSession, tenant: str, key: str, parts: dict[str, str], now: datetime
) -> TemplateOut:
    """Store the tenant's override of ``key`` once it renders with the sample notice;
    a part that does not is a 422 naming it (``body.<part>``) and saying where."""
    key_of(key)
    allowed = rendering.part_names(key)
    for part in parts:
        if part not in allowed:
            other = (
                "the layout (layout.<language>)"
                if part in rendering.LAYOUT_PARTS
                else ("a message template (<template>.<language>)")
            )
            raise NotifyRuleError(
                f"{key} has the parts {', '.join(allowed)}; {part} belongs to {other}",
                f"body.{part}",
            )
    if not parts:
        raise NotifyRuleError(f"give at least one of {', '.join(allowed)}", "body")
    overrides, profile = await _tenant_templates(session, tenant)
    overrides[key] = {**overrides.get(key, {}), **parts}
    try:
        for part, source in parts.items():
            rendering.check_source(part, source, html=part == "html")
        preview(tenant, key, overrides, profile)
    except rendering.TemplateProblem as exc:
        raise NotifyRuleError(exc.message, f"body.{exc.part}") from exc
    await session.execute(
        delete(templates).where(templates.c.tenant == tenant, templates.c.key == key)
    )
    await session.execute(
        insert(templates).values(tenant=tenant, key=key, parts=overrides[key], updated_at=now)
    )
    return await get_template(session, tenant, key)


async def delete_template(session: AsyncSession, tenant: str, key: str) -> None:
    """Drop the tenant's override of ``key``: the shipped template applies again."""
    key_of(key)
    await session.execute(
        delete(templates).where(templates.c.tenant == tenant, templates.c.key == key)
    )


async def list_templates(session: AsyncSession, tenant: str) -> list[dict[str, Any]]:
    """Every shipped template key, and the tenant's own keys, with the parts it overrides."""
    overrides = (await storage.template_overrides(session, [tenant]))[tenant]
    keys = {f"{name}.{lang}" for lang in rendering.LANGUAGES for name in rendering.shipped(lang)}
    keys |= set(overrides)
    return [{"key": key, "overridden": sorted(overrides.get(key, {}))} for key in sorted(keys)]


# -- the profile -------------------------------------------------------------------


async def get_profile(session: AsyncSession, tenant: str) -> ProfileOut:
    """The tenant's profile, or the defaults."""
    row = (
        (await session.execute(select(profiles).where(profiles.c.tenant == tenant)))
        .mappings()
        .first()
    )
    if row is None:
        defaults = {k: v for k, v in rendering.DEFAULT_PROFILE.items() if v is not None}
        return ProfileOut.model_validate({**defaults, "updated_at": None})
    return ProfileOut.model_validate({**row["profile"], "updated_at": utc(row["updated_at"])})


async def put_profile(
    session: AsyncSession, tenant: str, body: ProfileIn, now: datetime
) -> ProfileOut:
    """Replace the tenant's profile."""
    await session.execute(delete(profiles).where(profiles.c.tenant == tenant))
    await session.execute(
        insert(profiles).values(tenant=tenant, profile=body.model_dump(mode="json"), updated_at=now)
    )
    return ProfileOut.model_validate({**body.model_dump(), "updated_at": now})


# -- opt-outs ----------------------------------------------------------------------


def _channels(address: str, body: ContactIn | None) -> list[str]:
    reachable = domain.channels_of(address)
    if body is None or body.channels is None:
        return list(reachable)
    for index, channel in enumerate(body.channels):
        if channel not in reachable:
            raise NotifyRuleError(
                f"{channel} does not reach {domain.address_kind(address)} addresses; "
                f"use {', '.join(reachable)}",
                f"body.channels[{index}]",
            )
    return sorted(set(body.channels))


async def get_contact(session: AsyncSession, tenant: str, address: str) -> ContactOut:
    """The channels a contact opted out of."""
    normalized = domain.normalize_address(address)
    rows = (
        await session.execute(
            select(opt_outs)
            .where(opt_outs.c.tenant == tenant, opt_outs.c.address == normalized)
            .order_by(opt_outs.c.channel)
        )
    ).mappings()
    return ContactOut(
        address=normalized,
        opted_out=[
            OptOut(channel=r["channel"], reason=r["reason"], since=utc(r["created_at"]))
            for r in rows
        ],
    )


async def opt_out(
    session: AsyncSession, tenant: str, address: str, body: ContactIn | None, now: datetime
) -> ContactOut:
    """Stop notices to ``address`` on the channels given (an opt-out already on record
    keeps its date)."""
    normalized = domain.normalize_address(address)
    channels = _channels(normalized, body)
    present = {
        c
        for (c,) in await session.execute(
            select(opt_outs.c.channel).where(
                opt_outs.c.tenant == tenant, opt_outs.c.address == normalized
            )
        )
    }
    new = [c for c in channels if c not in present]
    if new:
        reason = body.reason if body else ""
        await session.execute(
            insert(opt_outs),
            [
                {
                    "tenant": tenant,
                    "address": normalized,
                    "channel": c,
                    "reason": reason,
                    "created_at": now,
                }
                for c in new
            ],
        )
    return await get_contact(session, tenant, normalized)


async def opt_in(
    session: AsyncSession, tenant: str, address: str, body: ContactIn | None
) -> ContactOut:
    """Notices to ``address`` on the channels given may go out again."""
    normalized = domain.normalize_address(address)
    channels = _channels(normalized, body)
    await session.execute(
        delete(opt_outs).where(
            opt_outs.c.tenant == tenant,
            opt_outs.c.address == normalized,
            opt_outs.c.channel.in_(channels),
        )
    )
    return await get_contact(session, tenant, normalized)


# -- tasks -------------------------------------------------------------------------


async def load_task(session: AsyncSession, tenant: str, task_id: str, *, lock: bool = False) -> Any:
    """A task of the tenant; ``NotFound`` otherwise."""
    query = select(tasks).where(tasks.c.tenant == tenant, tasks.c.task_id == task_id)
    row = (await session.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"There is no task {task_id!r}.")
    if lock:
        await lock_account(session, tenant, row["account_id"])
        row = (await session.execute(query.with_for_update())).mappings().first()
    return row


def _same_completion(row: Any, body: TaskCompleteIn) -> bool:
    amount = to_minor(body.amount, body.currency) if body.amount and body.currency else None
    return bool(
        row["outcome"] == body.outcome
        and (row["note"] or "") == body.note
        and row["promised_minor"] == amount
        and row["promised_currency"] == body.currency
        and row["promised_date"] == body.promised_date
    )


async def complete_task(
    session: AsyncSession,
    outbox: Outbox,
    tenant: str,
    task_id: str,
    body: TaskCompleteIn,
    now: datetime,
) -> TaskOut:
    """Complete an open task and publish ``CollectorTaskCompleted``. The same completion
    again returns it unchanged; another outcome for a completed task is a ``Conflict``."""
    row = await load_task(session, tenant, task_id, lock=True)
    if row["status"] == "completed":
        if _same_completion(row, body):
            return task_view(row)
        raise Conflict(f"Task {task_id!r} was already completed with outcome {row['outcome']!r}.")
    promised = None
    if body.outcome == "promised":
        assert body.amount is not None and body.currency is not None
        promised = Money(amount=body.amount, currency=body.currency)
    values = {
        "status": "completed",
        "outcome": body.outcome,
        "note": body.note,
        "promised_minor": to_minor(promised.amount, promised.currency) if promised else None,
        "promised_currency": promised.currency if promised else None,
        "promised_date": body.promised_date,
        "completed_by": body.completed_by,
        "completed_at": now,
    }
    await session.execute(update(tasks).where(tasks.c.seq == row["seq"]).values(**values))
    event = CollectorTaskCompleted(
        account_id=row["account_id"],
        task_id=task_id,
        notification_id=row["notification_id"],
        outcome=body.outcome,
        promised_amount=promised,
        promised_date=body.promised_date,
        note=body.note,
        completed_by=body.completed_by,
        completed_at=now,
    )
    await outbox.add(session, events.envelope(tenant, event, now))
    return task_view({**dict(row), **values})
