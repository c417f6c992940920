"""10,000 events, 8 partitions, 2,000 keys; SIGKILL the consumer mid-batch; restart.

Every event must be applied exactly once (counted in the database) and each
key's events in the order they were published.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from dunning_events import topics
from dunning_runtime.bus import create_bus
from dunning_runtime.db import Database
from tests.support import ledger, procs
from tests.support.events import message, overdue

EVENTS = 10_000
KEYS = 2_000


async def wait_for_count(database: Database, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = await ledger.count_applied(database)
        if count >= at_least:
            return count
        await asyncio.sleep(0.05)
    return count


async def test_sigkill_mid_batch_then_restart_applies_each_event_once_in_key_order(
    settings_factory,
) -> None:
    settings = settings_factory("ledger", bus_partitions=8, consumer_batch_size=100)
    bus = create_bus(settings)
    await bus.start()
    await bus.ensure_topics([topics.INVOICES])
    per_key = EVENTS // KEYS
    envelopes = [overdue(f"acc-{k:04d}", seq) for seq in range(1, per_key + 1) for k in range(KEYS)]
    for start in range(0, EVENTS, 1_000):
        await bus.publish([message(e) for e in envelopes[start : start + 1_000]])
    await bus.close()

    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(ledger.VERSIONS)
    env = procs.settings_env(settings)
    # A small delay per event keeps each batch's transaction open long enough
    # that the kill lands inside one.
    first = procs.start(
        "tests.support.ledger", topics.INVOICES, "ledger", env={**env, "LEDGER_DELAY_S": "0.002"}
    )
    try:
        seen = await wait_for_count(database, 2_500, timeout=300)
        assert seen >= 2_500, f"the consumer applied only {seen} events before the kill"
    finally:
        procs.kill(first)
    at_kill = await ledger.count_applied(database)
    assert at_kill < EVENTS, "the kill came too late to test anything"
    print(f"killed the consumer after {at_kill} of {EVENTS} events were applied")

    second = procs.start("tests.support.ledger", topics.INVOICES, "ledger", env=env)
    try:
        final = await wait_for_count(database, EVENTS, timeout=600)
        # Let any redelivered duplicates arrive; the inbox must absorb them.
        await asyncio.sleep(2)
        final = await ledger.count_applied(database)
    finally:
        procs.kill(second)

    rows = await ledger.rows_in_apply_order(database)
    await database.dispose()
    assert final == EVENTS, f"applied {final} events, expected exactly {EVENTS}"
    assert len({event_id for event_id, _, _ in rows}) == EVENTS
    by_key: dict[str, list[int]] = defaultdict(list)
    for _, account, seq in rows:
        by_key[account].append(seq)
    assert len(by_key) == KEYS
    out_of_order = {k: s for k, s in by_key.items() if s != sorted(s)}
    assert not out_of_order, (
        f"per-key order broken for {len(out_of_order)} keys, "
        f"e.g. {next(iter(out_of_order.items()))}"
    )
