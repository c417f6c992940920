"""dunning-svc's scheduled work: the account timers.

Every account stores when it next needs a look (``next_action_at``, indexed). The
sweep reads only the accounts due as of the clock, a batch per transaction, and
folds a ``Tick`` through the core for each, so a million accounts with nothing due
cost one index probe, not a million reads.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.app import Runtime, ScheduledJob
from dunning_runtime.outbox import Outbox
from dunning_svc import storage
from dunning_svc.commands import PolicyBook, Work, process
from dunning_svc.core import Tick

#: Accounts per transaction.
BATCH = 1000
_TICK = Tick()


async def sweep_batch(
    session: AsyncSession, outbox: Outbox, book: PolicyBook, now: datetime, batch_size: int
) -> int:
    """Run the timers of up to ``batch_size`` accounts due at ``now``; returns how many
    (``batch_size`` means: there may be more)."""
    due = await storage.due_accounts(session, now, batch_size)
    if due:
        await process(session, outbox, book, [Work(t, a, _TICK) for t, a in due], now, create=False)
    return len(due)


async def sweep(runtime: Runtime, book: PolicyBook | None = None) -> int:
    """Run every account timer due as of the clock, a batch per transaction; returns how
    many accounts were looked at."""
    book = book or _BOOK
    now = runtime.clock.now()
    total = 0
    while True:
        async with runtime.database.transaction() as session:
            count = await sweep_batch(session, runtime.outbox, book, now, BATCH)
        total += count
        if count < BATCH:
            return total


_BOOK = PolicyBook()


async def _run(runtime: Runtime) -> None:
    await sweep(runtime)


TIMERS = ScheduledJob("dunning-timers", _run, interval_s=30.0)
