"""invoice-svc's scheduled work: overdue detection."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Event
from dunning_runtime.app import Runtime, ScheduledJob
from dunning_runtime.locks import lock_accounts
from dunning_runtime.outbox import Outbox
from dunning_runtime.scope import emit
from invoice_svc import events, storage
from invoice_svc.commands import scope_for

#: Invoices per transaction. Each distinct account in a batch holds one advisory lock
#: on PostgreSQL, so this also bounds the locks one transaction takes.
BATCH = 500


async def detect_overdue_batch(
    session: AsyncSession, now: datetime, outbox: Outbox, batch_size: int
) -> int:
    """Publish ``InvoiceOverdue`` for up to ``batch_size`` invoices of any tenant due at
    ``now``; returns how many (``batch_size`` means: there may be more).

    The accounts are locked before the invoices are read, like every other writer, so
    an overdue notice and a payment or dispute on the same account never interleave.
    Each invoice is marked so it is never announced twice.
    """
    accounts = await storage.overdue_accounts(session, now, batch_size)
    if not accounts:
        return 0
    await lock_accounts(session, accounts)
    rows = await storage.claim_overdue(session, now, accounts, batch_size)
    by_tenant: dict[str, list[Event]] = {}
    for row in rows:
        by_tenant.setdefault(row["tenant"], []).append(events.overdue(row, now))
    for tenant, overdue in by_tenant.items():
        await emit(session, scope_for(tenant, now, outbox), *overdue)
    return len(rows)


async def detect_overdue(runtime: Runtime) -> int:
    """Publish ``InvoiceOverdue`` for every invoice overdue as of the clock, a batch per
    transaction, and return how many; each invoice is announced once."""
    now = runtime.clock.now()
    total = 0
    while True:
        async with runtime.database.transaction() as session:
            count = await detect_overdue_batch(session, now, runtime.outbox, BATCH)
        total += count
        if count < BATCH:
            return total


OVERDUE = ScheduledJob("invoice-overdue", detect_overdue, interval_s=60.0)
