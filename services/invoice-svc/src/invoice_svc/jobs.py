"""invoice-svc's scheduled work: overdue detection."""

from __future__ import annotations

from dunning_runtime.app import Runtime, ScheduledJob
from invoice_svc import commands

BATCH = 1000


async def detect_overdue(runtime: Runtime) -> int:
    """Publish ``InvoiceOverdue`` for every invoice overdue as of the clock, a batch per
    transaction, and return how many; each invoice is announced once."""
    now = runtime.clock.now()
    total = 0
    while True:
        async with runtime.database.transaction() as session:
            count = await commands.detect_overdue_batch(session, now, runtime.outbox, BATCH)
        total += count
        if count < BATCH:
            return total


OVERDUE = ScheduledJob("invoice-overdue", detect_overdue, interval_s=60.0)
