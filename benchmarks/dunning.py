"""dunning-svc: event throughput against the bare consumer, and the timer sweep.

* ``dunning_events_per_s``: dunning-svc's batch handler (``commands.apply_events``:
  lock the chunk's accounts, one load, fold through the pure core, bulk writes of
  accounts, timeline and outbox) under ``EventConsumer``, over ``InvoiceIssued`` events
  for many accounts, half of them already overdue (so the core emits a notice and a
  stage change for those). ``dunning_vs_raw_consume`` divides it by the bare consumer's
  rate measured in the same run on the same topic (``benchmarks.bus.raw_consume``).
* ``dunning_cpu_us_per_event``: the bench process's CPU time (user + system, from
  ``time.process_time``) during that consume run, per event: the consumer, decode,
  inbox, handler and database client; the broker and PostgreSQL are other processes.
  Steadier than the rate on a loaded machine.
* ``timer_sweep_1m_accounts_s``: seconds for the timer job to run the timers of
  ``accounts`` accounts that are all due at once (each one escalates from overdue_1 to
  overdue_2: a stage change, an email and an SMS), scaled to 1,000,000 when fewer are
  measured (``timer_sweep_accounts`` says how many were).
* ``timer_sweep_cpu_us_per_account``: the process's CPU time during that sweep
  (``jobs.sweep``: the due query, locks, load, fold, envelopes, bulk writes, database
  client), per account.
* ``dunning_rss_mb``: the process's resident memory right after that sweep, with the
  accounts in the database.
* ``sweep_core_us_per_account``: the pure core's share of that: read the account's
  state and fold the ``Tick`` (the decision, its commands and timeline rows).
* ``sweep_cpu_us_per_account``: the in-memory part of that sweep for one account, with
  no database and no bus: read its state, fold the ``Tick`` through the pure core, put
  the three commands in envelopes and encode them for the outbox, write its columns
  back. ``timer_sweep_1m_cpu_floor_s`` is that times a million: the least a sweep of a
  million such accounts can take on one core before any IO.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, insert, select

from benchmarks.bus import raw_consume
from benchmarks.isolation import isolated
from dunning_events import Envelope, InvoiceIssued, make_envelope, topics
from dunning_events.codec import to_kafka
from dunning_runtime import heap
from dunning_runtime.bus import create_bus
from dunning_runtime.bus.port import OutgoingMessage
from dunning_runtime.clock import ManualClock
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database
from dunning_runtime.messaging_tables import inbox
from dunning_runtime.outbox import Outbox, encode_headers
from dunning_runtime.scope import Scope, envelope_of
from dunning_svc import jobs, storage
from dunning_svc.commands import Policies, PolicyBook, Work, apply_events, fold
from dunning_svc.core import Account, InvoiceState, Tick
from dunning_svc.main import SPEC

NOW = datetime(2026, 3, 5, 10, tzinfo=UTC)
CONSUME_BATCH = 500
INSERT_BATCH = 10_000


@dataclass
class _Runtime:
    """What the handler and the job use of a Runtime: clock, outbox, database."""

    clock: ManualClock
    outbox: Outbox
    database: Database


def issued(i: int, accounts: int) -> InvoiceIssued:
    """Invoice ``i`` of account ``i % accounts``; every other account is already overdue."""
    account = i % accounts
    due = date(2026, 3, 1) if account % 2 else date(2026, 4, 1)
    return InvoiceIssued.model_validate(
        {
            "account_id": f"ACC-{account:07d}",
            "invoice_id": f"INV-{i:08d}",
            "account_name": "ACME GmbH",
            "contact": {"name": "Dana Fischer", "email": "ap@acme.example"},
            "amount_due": {"amount": "1250.00", "currency": "EUR"},
            "issue_date": date(2026, 2, 1),
            "due_date": due,
            "timezone": "Europe/Berlin",
        }
    )


async def publish_issued(bus: Any, events: int) -> None:
    """``events`` ``issued`` invoices of tenant ``bench``, 4 per account, in batches of 500."""
    accounts = max(1, events // 4)
    for start in range(0, events, 500):
        batch = []
        for i in range(start, min(events, start + 500)):
            kafka = to_kafka(
                make_envelope(issued(i, accounts), tenant="bench", source="/bench", time=NOW)
            )
            batch.append(OutgoingMessage(topics.INVOICES, kafka.key, kafka.value, kafka.headers))
        await bus.publish(batch)


async def run(events: int, accounts: int, data_dir: Path) -> dict[str, float]:
    """Both measurements on fresh topics and tables; returns the figures."""
    async with isolated(SPEC, data_dir, clock="manual") as settings:
        database = Database.from_settings(settings)
        bus = create_bus(settings)
        try:
            await database.migrate(SPEC.versions)
            await bus.start()
            await bus.ensure_topics([*SPEC.produces, topics.INVOICES])
            runtime = _Runtime(ManualClock(NOW), Outbox(), database)
            figures: dict[str, float] = {"dunning_events": events}
            figures.update(await _events(bus, runtime, events))
            figures.update(await _sweep(runtime, accounts))
            figures.update(_sweep_cpu(runtime.outbox))
            return figures
        finally:
            await bus.close()
            await database.dispose()


async def _events(bus: Any, runtime: _Runtime, events: int) -> dict[str, float]:
    await publish_issued(bus, events)
    # What a service does once it has started (dunning_runtime.heap).
    heap.settle()
    raw = await raw_consume(bus, events, 0)
    applied = 0
    done = asyncio.Event()
    book = PolicyBook()

    async def handle(session: Any, envelopes: Sequence[Envelope]) -> None:
        nonlocal applied
        await apply_events(session, runtime, book, envelopes)  # type: ignore[arg-type]
        applied += len(envelopes)
        if applied >= events:
            done.set()

    consumer = EventConsumer(
        bus,
        runtime.database,
        Subscription("bench-dunning", (topics.INVOICES,), batch_handler=handle),
        batch_size=CONSUME_BATCH,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    task = asyncio.create_task(consumer.run())
    try:
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait({task, waiter}, timeout=900, return_when=asyncio.FIRST_COMPLETED)
        if not done.is_set():
            waiter.cancel()
            if task.done():
                task.result()
            raise TimeoutError(f"dunning-svc applied {applied} of {events} events")
        # The handler ran for the last chunk; wait for its transaction to commit.
        for _ in range(60_000):
            if await _inbox_count(runtime.database) >= events:
                break
            await asyncio.sleep(0.005)
        else:
            raise TimeoutError("the last chunk did not commit")
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    rate = events / seconds
    return {
        "dunning_events_per_s": rate,
        "dunning_raw_consume_events_per_s": events / raw,
        "dunning_vs_raw_consume": rate / (events / raw),
        "dunning_cpu_us_per_event": cpu / events * 1e6,
    }


async def _inbox_count(database: Database) -> int:
    async with database.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(inbox))).scalar_one())


def _template() -> str:
    """The state of an account at overdue_1 whose overdue_2 is due (one 1250 EUR invoice)."""
    account = Account(
        "bench",
        "template",
        account_name="ACME GmbH",
        timezone="Europe/Berlin",
        contact={"name": "Dana Fischer", "email": "ap@acme.example"},
    )
    account.invoices["INV-1"] = InvoiceState(
        "INV-1",
        currency="EUR",
        issued=True,
        amount_due=125_000,
        issue_date=date(2026, 1, 1),
        due_date=date(2026, 2, 20),
    )
    account.stage, account.sequence, account.cycle = "overdue_1", 2, 1
    account.steps_done = ["reminder", "overdue_1"]
    return storage.dumps(storage.state_of(account))


def _due_row(i: int, state: str) -> dict[str, Any]:
    """The stored row of swept account ``i``: the template's state, its timer an hour ago."""
    return {
        "tenant": "sweep",
        "account_id": f"S-{i:07d}",
        "segment": "standard",
        "stage": "overdue_1",
        "policy_version": 0,
        "paused": False,
        "written_off": False,
        "overdue_e4": 12_500_000,
        "oldest_due_date": date(2026, 2, 20),
        "next_action_at": NOW - timedelta(hours=1),
        "last_contact_at": NOW - timedelta(days=7),
        "state": state,
        "updated_at": NOW,
    }


async def _sweep(runtime: _Runtime, accounts: int) -> dict[str, float]:
    state = _template()
    for start in range(0, accounts, INSERT_BATCH):
        rows = [_due_row(i, state) for i in range(start, min(accounts, start + INSERT_BATCH))]
        async with runtime.database.transaction() as session:
            await session.execute(insert(storage.accounts), rows)
    heap.settle()
    started, cpu_started = time.perf_counter(), time.process_time()
    swept = await jobs.sweep(runtime)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    assert swept >= accounts, f"swept {swept} of {accounts}"
    return {
        "timer_sweep_accounts": accounts,
        "timer_sweep_accounts_per_s": accounts / seconds,
        "timer_sweep_1m_accounts_s": seconds * 1_000_000 / accounts,
        "timer_sweep_cpu_us_per_account": cpu / accounts * 1e6,
        "dunning_rss_mb": _rss_mb(),
    }


def _sweep_cpu(outbox: Outbox, repeat: int = 5_000) -> dict[str, float]:
    """The sweep's per-account work without IO, best of three rounds (see the docstring)."""
    row = SimpleNamespace(**_due_row(1, _template()))  # as the database hands it back
    policies, scope = Policies({}, {}), Scope("sweep", NOW, outbox, "/dunning-svc")
    work = Work(row.tenant, row.account_id, Tick())

    def decide() -> tuple[Account, list[Any]]:
        account = storage.to_account(row)
        commands, _ = fold(account, work, policies, NOW)
        assert len(commands) == 3, commands  # the stage change, the email and the SMS
        return account, commands

    def whole() -> None:
        account, commands = decide()
        for command in commands:
            encode_headers(to_kafka(envelope_of(scope, command)).headers)
        storage.columns_of(account, account.local_today(NOW), NOW)

    def best_of_three(step: Callable[[], object]) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(repeat):
                step()
            best = min(best, (time.perf_counter() - started) / repeat)
        return best

    core, total = best_of_three(decide), best_of_three(whole)
    return {
        "sweep_core_us_per_account": core * 1e6,
        "sweep_cpu_us_per_account": total * 1e6,
        "timer_sweep_1m_cpu_floor_s": total * 1_000_000,
    }


def _rss_mb() -> float:
    """Resident memory now (not the peak), from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
