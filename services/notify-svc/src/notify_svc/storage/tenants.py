"""A tenant's own settings of its notices: template overrides, the sender profile and
the contacts that opted out. Every statement on ``templates``, ``profiles`` and
``opt_outs``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.storage.tables import opt_outs, profiles, templates


async def opted_out(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> set[tuple[str, str, str]]:
    """``(tenant, address, channel)`` opt-outs among the ``(tenant, address)`` given."""
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    rows = await session.execute(
        select(opt_outs.c.tenant, opt_outs.c.address, opt_outs.c.channel).where(
            tuple_(opt_outs.c.tenant, opt_outs.c.address).in_(wanted)
        )
    )
    return {(t, a, c) for t, a, c in rows}


async def template_overrides(
    session: AsyncSession, tenants: Iterable[str]
) -> dict[str, dict[str, dict[str, str]]]:
    """Every tenant's template overrides: ``{tenant: {key: parts}}``."""
    wanted = sorted(set(tenants))
    if not wanted:
        return {}
    rows = await session.execute(select(templates).where(templates.c.tenant.in_(wanted)))
    found: dict[str, dict[str, dict[str, str]]] = {t: {} for t in wanted}
    for row in rows.mappings():
        found[row["tenant"]][row["key"]] = dict(row["parts"])
    return found


async def profiles_of(session: AsyncSession, tenants: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The tenants' sender profiles (missing ones are absent)."""
    wanted = sorted(set(tenants))
    if not wanted:
        return {}
    rows = await session.execute(select(profiles).where(profiles.c.tenant.in_(wanted)))
    return {r["tenant"]: dict(r["profile"]) for r in rows.mappings()}


async def put_template(
    session: AsyncSession, tenant: str, key: str, parts: dict[str, str], now: datetime
) -> None:
    """Store the tenant's override of ``key`` (all its parts), replacing any."""
    await delete_template(session, tenant, key)
    await session.execute(
        insert(templates).values(tenant=tenant, key=key, parts=parts, updated_at=now)
    )


async def delete_template(session: AsyncSession, tenant: str, key: str) -> None:
    """Drop the tenant's override of ``key`` (none is fine)."""
    await session.execute(
        delete(templates).where(templates.c.tenant == tenant, templates.c.key == key)
    )


async def profile_row(session: AsyncSession, tenant: str) -> RowMapping | None:
    """The tenant's stored profile (``profile``, ``updated_at``), or None."""
    rows = await session.execute(select(profiles).where(profiles.c.tenant == tenant))
    return rows.mappings().first()


async def put_profile(
    session: AsyncSession, tenant: str, profile: dict[str, Any], now: datetime
) -> None:
    """Replace the tenant's profile."""
    await session.execute(delete(profiles).where(profiles.c.tenant == tenant))
    await session.execute(insert(profiles).values(tenant=tenant, profile=profile, updated_at=now))


async def opt_outs_of(session: AsyncSession, tenant: str, address: str) -> Sequence[RowMapping]:
    """A normalized address's opt-outs (``channel``, ``reason``, ``created_at``), by channel."""
    rows = await session.execute(
        select(opt_outs)
        .where(opt_outs.c.tenant == tenant, opt_outs.c.address == address)
        .order_by(opt_outs.c.channel)
    )
    return rows.mappings().all()


async def add_opt_outs(
    session: AsyncSession,
    tenant: str,
    address: str,
    channels: Sequence[str],
    reason: str,
    now: datetime,
) -> None:
    """Record that ``address`` opted out of ``channels`` (none of them on record yet)."""
    if not channels:
        return
    await session.execute(
        insert(opt_outs),
        [
            {
                "tenant": tenant,
                "address": address,
                "channel": c,
                "reason": reason,
                "created_at": now,
            }
            for c in channels
        ],
    )


async def remove_opt_outs(
    session: AsyncSession, tenant: str, address: str, channels: Sequence[str]
) -> None:
    """Drop the opt-outs of ``address`` from ``channels``."""
    await session.execute(
        delete(opt_outs).where(
            opt_outs.c.tenant == tenant,
            opt_outs.c.address == address,
            opt_outs.c.channel.in_(channels),
        )
    )
