"""The service's table of managed keys, and the ring reloaded from it."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.api_keys.records import KeyRecord
from dunning_runtime.api_keys.ring import KeyRing
from dunning_runtime.db import Database
from dunning_runtime.messaging_tables import api_keys

#: How often each process reloads its keys from its own table.
REFRESH_INTERVAL_S = 1.0


async def find(session: AsyncSession, key_id: str, *, for_update: bool = False) -> KeyRecord | None:
    """The record of ``key_id``, None if the service has none."""
    query = select(api_keys).where(api_keys.c.key_id == key_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    return KeyRecord.of_row(row) if row is not None else None


async def record(session: AsyncSession, incoming: KeyRecord) -> KeyRecord:
    """Store ``incoming``, merged into what the table already holds of the key; the
    record as stored now."""
    known = await find(session, incoming.key_id, for_update=True)
    if known is None:
        await session.execute(insert(api_keys).values(**asdict(incoming)))
        return incoming
    merged = known.merged(incoming)
    if merged != known:
        await session.execute(
            update(api_keys)
            .where(api_keys.c.key_id == merged.key_id)
            .values(expires_at=merged.expires_at, revoked_at=merged.revoked_at)
        )
    return merged


async def all_records(session: AsyncSession) -> list[KeyRecord]:
    """Every key the service has, oldest first."""
    rows = await session.execute(select(api_keys).order_by(api_keys.c.created_at))
    return [KeyRecord.of_row(row) for row in rows]


async def refresh(ring: KeyRing, database: Database) -> None:
    """Reload ``ring`` from the service's table (the keys neither revoked nor expired)."""
    now = datetime.now(UTC)
    async with database.sessions() as session:
        rows = await session.execute(
            select(api_keys).where(
                api_keys.c.revoked_at.is_(None)
                & (api_keys.c.expires_at.is_(None) | (api_keys.c.expires_at > now))
            )
        )
        records = [KeyRecord.of_row(row) for row in rows]
        await session.rollback()
    ring.load(records)


async def keep_fresh(ring: KeyRing, database: Database) -> None:
    """Reload ``ring`` every ``REFRESH_INTERVAL_S`` (a supervised task: a failure, the
    database away, ends it and the supervisor restarts it; the last keys stay loaded)."""
    while True:
        await asyncio.sleep(REFRESH_INTERVAL_S)
        await refresh(ring, database)
