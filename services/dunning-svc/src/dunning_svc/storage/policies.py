"""Policy versions per tenant and segment, and the accounts a new version moves."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import (
    Update,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.bulk import driver_connection
from dunning_runtime.db import utc
from dunning_svc.policy import PublishedPolicy, load_policy_json
from dunning_svc.storage.tables import (
    accounts,
    policies,
)

# -- policies -----------------------------------------------------------------------


async def latest_versions(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The newest policy version of each ``(tenant, segment)`` that has one stored."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    driver = await driver_connection(session)
    if driver is not None:
        # Once per chunk and sweep batch: a prepared statement, no SQLAlchemy compile.
        found = await driver.fetch(_LATEST, [t for t, _ in wanted], [s for _, s in wanted])
        return {(t, s): int(v) for t, s, v in found}
    rows = await session.execute(
        select(policies.c.tenant, policies.c.segment, func.max(policies.c.version))
        .where(tuple_(policies.c.tenant, policies.c.segment).in_(wanted))
        .group_by(policies.c.tenant, policies.c.segment)
    )
    return {(t, s): int(v) for t, s, v in rows}


#: ``latest_versions`` on PostgreSQL: the pairs as two arrays, each looked up in the key.
_LATEST = (
    "SELECT p.tenant, p.segment, max(p.version)"
    " FROM unnest($1::text[], $2::text[]) AS k(tenant, segment)"
    " JOIN policies AS p ON p.tenant = k.tenant AND p.segment = k.segment"
    " GROUP BY p.tenant, p.segment"
)


async def policy_bodies(
    session: AsyncSession, keys: Iterable[tuple[str, str, int]]
) -> dict[tuple[str, str, int], str]:
    """Stored policy bodies by ``(tenant, segment, version)``."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(policies.c.tenant, policies.c.segment, policies.c.version, policies.c.body).where(
            tuple_(policies.c.tenant, policies.c.segment, policies.c.version).in_(wanted)
        )
    )
    return {(t, s, v): b for t, s, v, b in rows}


async def newest_policy(session: AsyncSession, tenant: str, segment: str) -> PublishedPolicy | None:
    """The newest stored version of ``tenant``'s ``segment`` policy, or None."""
    found = await policy_versions(session, tenant, segment, limit=1)
    return found[0] if found else None


async def policy_versions(
    session: AsyncSession, tenant: str, segment: str, *, limit: int | None = None
) -> list[PublishedPolicy]:
    """The stored versions of ``tenant``'s ``segment`` policy, newest first."""
    query = (
        select(policies)
        .where(policies.c.tenant == tenant, policies.c.segment == segment)
        .order_by(policies.c.version.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    rows = (await session.execute(query)).all()
    return [
        PublishedPolicy(
            segment,
            load_policy_json(r.body, version=r.version),
            apply_to_running=r.apply_to_running,
            created_by=r.created_by,
            created_at=utc(r.created_at),
        )
        for r in rows
    ]


async def policy_segments(session: AsyncSession, tenant: str) -> list[str]:
    """The segments ``tenant`` has published a policy for (in no order)."""
    rows = await session.execute(
        select(policies.c.segment).where(policies.c.tenant == tenant).distinct()
    )
    return list(rows.scalars().all())


async def add_policy(session: AsyncSession, tenant: str, published: PublishedPolicy) -> None:
    """Store a new policy version (its number is in ``published.policy``)."""
    await session.execute(
        insert(policies).values(
            tenant=tenant,
            segment=published.segment,
            version=published.version,
            body=published.policy.model_dump_json(),
            apply_to_running=published.apply_to_running,
            created_by=published.created_by,
            created_at=published.created_at,
        )
    )


async def repin_running(
    session: AsyncSession, tenant: str, segment: str, version: int, now: datetime
) -> None:
    """Move the accounts of ``segment`` already in dunning to policy ``version``, due for
    a look at ``now``."""
    await session.execute(
        _of_segment(tenant, segment)
        .where(accounts.c.policy_version.is_not(None))
        .values(policy_version=version, next_action_at=now)
    )


async def wake_idle(session: AsyncSession, tenant: str, segment: str, now: datetime) -> None:
    """Make the accounts of ``segment`` not in dunning (no pinned version, not written
    off) due for a look at ``now``."""
    await session.execute(
        _of_segment(tenant, segment)
        .where(accounts.c.policy_version.is_(None), accounts.c.written_off.is_(False))
        .values(next_action_at=now)
    )


def _of_segment(tenant: str, segment: str) -> Update:
    """An UPDATE of the accounts of ``tenant``'s ``segment``."""
    return update(accounts).where(accounts.c.tenant == tenant, accounts.c.segment == segment)
