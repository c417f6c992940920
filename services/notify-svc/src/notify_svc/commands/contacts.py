"""Opt-outs: the channels a contact address no longer receives notices on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.db import utc
from notify_svc import domain
from notify_svc.domain import ContactOptOuts, NotifyRuleError, OptedOut
from notify_svc.storage import tenants


def _channels(address: str, channels: Sequence[str] | None) -> list[str]:
    reachable = domain.channels_of(address)
    if channels is None:
        return list(reachable)
    for index, channel in enumerate(channels):
        if channel not in reachable:
            raise NotifyRuleError(
                f"{channel} does not reach {domain.address_kind(address)} addresses; "
                f"use {', '.join(reachable)}",
                f"channels[{index}]",
            )
    return sorted(set(channels))


async def get_contact(session: AsyncSession, tenant: str, address: str) -> ContactOptOuts:
    """The channels a contact opted out of."""
    normalized = domain.normalize_address(address)
    rows = await tenants.opt_outs_of(session, tenant, normalized)
    return ContactOptOuts(
        address=normalized,
        opted_out=[OptedOut(r["channel"], r["reason"], utc(r["created_at"])) for r in rows],
    )


async def opt_out(
    session: AsyncSession,
    tenant: str,
    address: str,
    channels: Sequence[str] | None,
    reason: str,
    now: datetime,
) -> ContactOptOuts:
    """Stop notices to ``address`` on ``channels`` (None: every channel that reaches it);
    an opt-out already on record keeps its date."""
    normalized = domain.normalize_address(address)
    wanted = _channels(normalized, channels)
    present = {r["channel"] for r in await tenants.opt_outs_of(session, tenant, normalized)}
    new = [c for c in wanted if c not in present]
    await tenants.add_opt_outs(session, tenant, normalized, new, reason, now)
    return await get_contact(session, tenant, normalized)


async def opt_in(
    session: AsyncSession, tenant: str, address: str, channels: Sequence[str] | None
) -> ContactOptOuts:
    """Notices to ``address`` on ``channels`` (None: all) may go out again."""
    normalized = domain.normalize_address(address)
    await tenants.remove_opt_outs(session, tenant, normalized, _channels(normalized, channels))
    return await get_contact(session, tenant, normalized)
