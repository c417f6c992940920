"""The manual clock's instant in the service's database, so it survives a restart.

Without it a restarted service's manual clock started at the wall clock, refused to go
back to the simulated time, and a scenario that restarted a service mid-way lost its
time. The clock itself (``clock.ManualClock``) stays free of IO; the app factory loads
the instant at start and stores it whenever ``PUT /v1/admin/clock`` moves it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update

from dunning_runtime.db import Database, utc
from dunning_runtime.messaging_tables import manual_clock

_ROW = "manual"


async def load(database: Database) -> datetime | None:
    """The instant stored by the last ``save``, or None if the clock was never set."""
    async with database.sessions() as session:
        stored = (
            await session.execute(select(manual_clock.c.now).where(manual_clock.c.name == _ROW))
        ).scalar_one_or_none()
        await session.rollback()
    return utc(stored)


async def save(database: Database, instant: datetime) -> None:
    """Store ``instant`` as the clock's time (the clock has already accepted it)."""
    async with database.transaction() as session:
        moved = await session.execute(
            update(manual_clock).where(manual_clock.c.name == _ROW).values(now=instant)
        )
        if not moved.rowcount:  # type: ignore[attr-defined]
            await session.execute(insert(manual_clock).values(name=_ROW, now=instant))
