"""Templates: a tenant's overrides, checked by rendering them with a sample notice."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Money, NotificationRequested
from dunning_events.samples import sample_event
from notify_svc import rendering
from notify_svc.domain import NotifyRuleError
from notify_svc.storage import tenants


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
    """The template name and language of a key; a rule error naming ``path.key`` otherwise."""
    try:
        return rendering.parse_key(key)
    except ValueError as exc:
        raise NotifyRuleError(str(exc), "key", location="path") from exc


def preview(
    tenant: str, key: str, overrides: dict[str, dict[str, str]], profile: dict[str, Any]
) -> rendering.Rendered:
    """Render ``key`` with the sample notice; ``TemplateProblem`` names the part at fault."""
    name, language = key_of(key)
    template = "overdue_1" if name == rendering.LAYOUT else name
    request = sample_request(template, language)
    context = rendering.build_context(tenant, request, profile)
    return rendering.render(template, language, context, overrides)


async def _tenant_templates(
    session: AsyncSession, tenant: str
) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    overrides = (await tenants.template_overrides(session, [tenant]))[tenant]
    profile = (await tenants.profiles_of(session, [tenant])).get(tenant, {})
    return overrides, profile


async def get_template(session: AsyncSession, tenant: str, key: str) -> rendering.TemplateShown:
    """A template as it renders for the tenant: its parts and a preview."""
    key_of(key)
    overrides, profile = await _tenant_templates(session, tenant)
    return rendering.TemplateShown(
        key=key,
        parts=rendering.parts_of(key, overrides),
        overridden=sorted(overrides.get(key, {})),
        preview=preview(tenant, key, overrides, profile),
    )


def _check_part_names(key: str, parts: dict[str, str]) -> None:
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
                part,
            )
    if not parts:
        raise NotifyRuleError(f"give at least one of {', '.join(allowed)}")


async def put_template(
    session: AsyncSession, tenant: str, key: str, parts: dict[str, str], now: datetime
) -> rendering.TemplateShown:
    """Store the tenant's override of ``key`` once it renders with the sample notice;
    a part that does not is a rule error naming it (``body.<part>``) and saying where."""
    key_of(key)
    _check_part_names(key, parts)
    overrides, profile = await _tenant_templates(session, tenant)
    overrides[key] = {**overrides.get(key, {}), **parts}
    try:
        for part, source in parts.items():
            rendering.check_source(part, source, html=part == "html")
        preview(tenant, key, overrides, profile)
    except rendering.TemplateProblem as exc:
        raise NotifyRuleError(exc.message, exc.part) from exc
    await tenants.put_template(session, tenant, key, overrides[key], now)
    return await get_template(session, tenant, key)


async def delete_template(session: AsyncSession, tenant: str, key: str) -> None:
    """Drop the tenant's override of ``key``: the shipped template applies again."""
    key_of(key)
    await tenants.delete_template(session, tenant, key)


async def list_templates(session: AsyncSession, tenant: str) -> list[dict[str, Any]]:
    """Every shipped template key, and the tenant's own keys, with the parts it overrides."""
    overrides = (await tenants.template_overrides(session, [tenant]))[tenant]
    keys = {f"{name}.{lang}" for lang in rendering.LANGUAGES for name in rendering.shipped(lang)}
    keys |= set(overrides)
    return [{"key": key, "overridden": sorted(overrides.get(key, {}))} for key in sorted(keys)]
