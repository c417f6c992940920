"""A tiny service used by the bus tests: it applies events to an ``applied`` table.

It runs in the test process or as a separate process (``python -m
tests.support.ledger``) that the tests SIGKILL, so it uses only the library
pieces a real service uses: Database + migrations, EventConsumer, inbox.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope
from dunning_runtime.bus import create_bus
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database
from dunning_runtime.settings import ServiceSettings

VERSIONS = Path(__file__).parent / "migrations"
metadata = MetaData()
applied = Table(
    "applied",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("account", String(200), nullable=False),
    Column("seq", Integer, nullable=False),
)


async def apply_event(session: AsyncSession, envelope: Envelope) -> None:
    """Record the event; ``days_past_due`` carries the producer's sequence number per key."""
    seq = int(getattr(envelope.data, "days_past_due", 0))
    delay = float(os.environ.get("LEDGER_DELAY_S", "0"))
    if delay:
        await asyncio.sleep(delay)
    await session.execute(
        insert(applied).values(event_id=envelope.id, account=envelope.subject, seq=seq)
    )


async def apply_batch(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """The batch form of ``apply_event``: one bulk insert for a partition's chunk."""
    if envelopes:
        await session.execute(
            insert(applied),
            [
                {
                    "event_id": e.id,
                    "account": e.subject,
                    "seq": int(getattr(e.data, "days_past_due", 0)),
                }
                for e in envelopes
            ],
        )


async def count_applied(database: Database) -> int:
    """Rows in ``applied``."""
    async with database.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(applied))).scalar_one())


async def rows_in_apply_order(database: Database) -> list[tuple[str, str, int]]:
    """(event_id, account, seq) in the order they were applied."""
    async with database.sessions() as session:
        result = await session.execute(
            select(applied.c.event_id, applied.c.account, applied.c.seq).order_by(applied.c.id)
        )
        return [(r.event_id, r.account, r.seq) for r in result]


async def run(settings: ServiceSettings, topic: str, group: str) -> None:
    """Consume ``topic`` forever into the ledger."""
    database = Database.from_settings(settings)
    await database.migrate(VERSIONS)
    bus = create_bus(settings)
    await bus.start()
    consumer = EventConsumer(
        bus,
        database,
        Subscription(group, (topic,), apply_event),
        batch_size=settings.consumer_batch_size,
        concurrency=settings.consumer_concurrency,
        retry_max_s=settings.consumer_retry_max_s,
    )
    task = asyncio.create_task(consumer.run())
    await consumer.started.wait()
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    # argv: topic group; settings from the environment (DUNNING_*).
    asyncio.run(run(ServiceSettings(service_name="ledger"), sys.argv[1], sys.argv[2]))
