"""The inbox: event ids a consumer group has applied (principle 2).

A handler's effects and the inbox row commit in one transaction, so a
redelivered event is recognised and skipped: it never changes state twice and
never sends a second message.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.messaging_tables import inbox

APPLIED = "applied"
DEAD_LETTERED = "dead_lettered"


async def seen(session: AsyncSession, group: str, event_id: str) -> bool:
    """Whether ``group`` has already applied (or dead-lettered) ``event_id``."""
    row = await session.execute(
        select(inbox.c.event_id).where(
            inbox.c.consumer_group == group, inbox.c.event_id == event_id
        )
    )
    return row.first() is not None


async def seen_among(session: AsyncSession, group: str, event_ids: list[str]) -> set[str]:
    """The ids among ``event_ids`` that ``group`` has already applied: one query per batch."""
    if not event_ids:
        return set()
    rows = await session.execute(
        select(inbox.c.event_id).where(
            inbox.c.consumer_group == group, inbox.c.event_id.in_(event_ids)
        )
    )
    return {row.event_id for row in rows}


async def record_all(session: AsyncSession, group: str, events: list[tuple[str, str]]) -> None:
    """Remember every ``(event_id, topic)`` in one statement, in the caller's transaction."""
    if not events:
        return
    now = datetime.now(UTC)
    await session.execute(
        insert(inbox),
        [
            {
                "consumer_group": group,
                "event_id": event_id,
                "topic": topic,
                "outcome": APPLIED,
                "received_at": now,
            }
            for event_id, topic in events
        ],
    )


async def record(
    session: AsyncSession, group: str, event_id: str, topic: str, outcome: str = APPLIED
) -> None:
    """Remember ``event_id`` in the caller's transaction (a duplicate fails the transaction)."""
    await session.execute(
        insert(inbox).values(
            consumer_group=group,
            event_id=event_id,
            topic=topic,
            outcome=outcome,
            received_at=datetime.now(UTC),
        )
    )
