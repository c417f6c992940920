"""dunning-svc's scheduled work: the account timers.

Every account stores when it next needs a look (``next_action_at``, indexed). The
sweep (``commands.sweep_timers``) reads only the accounts due as of the clock, a batch
per transaction, and folds a ``Tick`` through the core for each, so a million accounts
with nothing due cost one index probe, not a million reads.
"""

from __future__ import annotations

from dunning_runtime.app import Runtime, ScheduledJob
from dunning_svc import commands
from dunning_svc.commands import PolicyBook

#: Accounts per transaction.
BATCH = 1000

_BOOK = PolicyBook()


async def sweep(runtime: Runtime, book: PolicyBook | None = None) -> int:
    """Run every account timer due as of the clock, a batch per transaction; returns how
    many accounts were looked at."""
    return await commands.sweep_timers(runtime, book or _BOOK, BATCH)


async def _run(runtime: Runtime) -> None:
    await sweep(runtime)


TIMERS = ScheduledJob("dunning-timers", _run, interval_s=30.0)
