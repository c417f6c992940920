"""The tenant's sender profile: how its notices sign off and how customers pay."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.db import utc
from notify_svc import rendering
from notify_svc.domain import Profile
from notify_svc.storage import tenants


async def get_profile(session: AsyncSession, tenant: str) -> Profile:
    """The tenant's profile, or the defaults."""
    row = await tenants.profile_row(session, tenant)
    if row is None:
        defaults = {k: v for k, v in rendering.DEFAULT_PROFILE.items() if v is not None}
        return Profile(defaults, None)
    return Profile(dict(row["profile"]), utc(row["updated_at"]))


async def put_profile(
    session: AsyncSession, tenant: str, fields: dict[str, Any], now: datetime
) -> Profile:
    """Replace the tenant's profile."""
    await tenants.put_profile(session, tenant, fields, now)
    return Profile(fields, now)
