"""The built-in housekeeping job of every service: keep the bookkeeping tables bounded.

It forgets inbox rows and idempotency keys past their retention windows and lets
the bus trim its log (the embedded log by age and size, never past an offset a
group still needs; Kafka's own retention applies there). Both tables are stamped
with wall-clock time, so the windows are wall-clock hours whatever the service's
clock says. Rows go in bounded batches, each in its own short transaction, so
housekeeping never holds a lock for long.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime import idempotency, inbox
from dunning_runtime.bus.port import Bus
from dunning_runtime.db import Database
from dunning_runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

#: How often the job runs on the system clock (on the manual clock: on every tick).
INTERVAL_S = 3600.0
#: Rows deleted per transaction.
BATCH = 5_000

Purge = Callable[[AsyncSession, datetime, int], Awaitable[int]]


class _Service(Protocol):
    @property
    def settings(self) -> ServiceSettings: ...

    @property
    def database(self) -> Database: ...

    @property
    def bus(self) -> Bus: ...


@dataclass(frozen=True)
class Removed:
    """What one housekeeping pass removed."""

    inbox_rows: int
    idempotency_keys: int
    log_records: int


async def purge_all(database: Database, purge: Purge, before: datetime, batch: int = BATCH) -> int:
    """Run ``purge`` in batches of ``batch`` until fewer come back; returns the total."""
    total = 0
    while True:
        async with database.transaction() as session:
            removed = await purge(session, before, batch)
        total += removed
        if removed < batch:
            return total


async def housekeep(service: _Service, now: datetime | None = None) -> Removed:
    """One pass: purge the inbox and idempotency keys, then enforce the bus's retention."""
    settings = service.settings
    now = now or datetime.now(UTC)
    removed = Removed(
        inbox_rows=await purge_all(
            service.database,
            inbox.purge,
            now - timedelta(hours=settings.inbox_retention_hours),
        ),
        idempotency_keys=await purge_all(
            service.database,
            idempotency.purge,
            now - timedelta(hours=settings.idempotency_retention_hours),
        ),
        log_records=await service.bus.enforce_retention(),
    )
    if removed.inbox_rows or removed.idempotency_keys or removed.log_records:
        log.info(
            "%s: housekeeping removed %d inbox rows, %d idempotency keys, %d log records",
            settings.service_name,
            removed.inbox_rows,
            removed.idempotency_keys,
            removed.log_records,
        )
    return removed
