"""Scale-out: two dunning-svc processes against one, on Kafka + PostgreSQL.

Each run has topics and tables of its own. Its workers are real OS processes
(``python -m benchmarks.scale_out worker``), each one dunning-svc's event handler
(``commands.apply_events`` under ``EventConsumer``) in one consumer group over
``invoices`` (``DUNNING_BUS_PARTITIONS`` partitions, 8 by default), and its timer
sweep (``jobs.sweep``). Once every partition is assigned the parent publishes
``events`` ``InvoiceIssued`` events of one tenant (4 per account, as ``dunning``'s
benchmark), times until the inbox holds all of them, then tells every worker to sweep
at once ``sweep_accounts`` accounts that are all due (each escalates: a stage change,
an email and an SMS), and times until all have finished.

* ``scale_out_2_replicas``: the event throughput of two processes divided by one
  process's, in the same run (``scale_out_sweep_2_replicas``: the same for the sweep).
* ``scale_out_split``: each of the two processes' share of the events (as committed by
  it); ``scale_out_sweep_split``: of the swept accounts.
* ``scale_out_cpu_share``: the CPU each worker process used while consuming over the
  seconds it took, first the one of the one-process run, then the two of the other: on
  a shared machine what bounds the speedup is how much of the cores the workers get.
* Checked, not timed: the inbox holds each event once and every account's timeline one
  ``input`` row per invoice (no event applied twice); every swept account has exactly
  one ``stage`` row (no account swept twice), and the workers' counts add up.

Embedded (SQLite, one writer) is skipped: it runs one process per service.
``BENCH_SCALE_MAX_ACCOUNT_LOCKS=32`` in the environment makes the workers lock a tenant
whole past 32 accounts, as before issue 17, for a before/after of the events.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from benchmarks.dunning import NOW, _due_row, _Runtime, _template, publish_issued
from benchmarks.isolation import isolated
from dunning_events import Envelope, topics
from dunning_runtime import locks
from dunning_runtime.bus import create_bus
from dunning_runtime.clock import ManualClock
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database, on_commit
from dunning_runtime.messaging_tables import inbox
from dunning_runtime.outbox import Outbox
from dunning_svc import commands, jobs, storage
from dunning_svc.commands import PolicyBook, apply_events
from dunning_svc.main import SPEC
from dunning_svc.storage.tables import timeline

GROUP = "bench-scale-out"
CONSUME_BATCH = 500
INSERT_BATCH = 10_000
#: Invoices per account, as in ``benchmarks.dunning``.
PER_ACCOUNT = 4


@dataclass
class Run:
    """One run with ``processes`` workers: seconds for the events and the sweep, and
    each worker's own counts (events committed, accounts swept, CPU seconds)."""

    processes: int
    events_s: float
    sweep_s: float
    workers: list[dict[str, float]]


async def run(events: int, sweep_accounts: int, data_dir: Path) -> dict[str, Any]:
    """One process, then two, on fresh topics and tables each; the figures, or none
    (with the reason printed) on a backend other than Kafka + PostgreSQL."""
    async with isolated(SPEC, data_dir / "probe") as settings:
        if settings.is_embedded_bus or not settings.effective_schema:
            print("scale-out: skipped, it needs Kafka and PostgreSQL (embedded: one process)")
            return {}
    one = await _measure(1, events, sweep_accounts, data_dir / "one")
    two = await _measure(2, events, sweep_accounts, data_dir / "two")
    return {
        "scale_out_events": events,
        "scale_out_swept_accounts": sweep_accounts,
        "scale_out_1_events_per_s": events / one.events_s,
        "scale_out_2_events_per_s": events / two.events_s,
        "scale_out_2_replicas": one.events_s / two.events_s,
        "scale_out_split": [w["events"] / events for w in two.workers],
        "scale_out_sweep_2_replicas": one.sweep_s / two.sweep_s,
        "scale_out_sweep_split": [w["swept"] / sweep_accounts for w in two.workers],
        "scale_out_cpu_us_per_event": [w["cpu_events_s"] * 1e6 / events for w in two.workers],
        # Seconds the chunks of each of the two waited for account locks while consuming.
        "scale_out_lock_wait_s": [w["lock_wait_s"] for w in two.workers],
        # The share of a core each worker's process got while consuming: the one of the
        # one-process run, then the two's. Their sum over the one's is the speedup the
        # machine allowed (the ratio varies with what else runs on the cores).
        "scale_out_cpu_share": [
            w["cpu_events_s"] / run.events_s for run in (one, two) for w in run.workers
        ],
    }


async def _measure(processes: int, events: int, sweep_accounts: int, data_dir: Path) -> Run:
    async with isolated(SPEC, data_dir, clock="manual") as settings:
        database = Database.from_settings(settings)
        bus = create_bus(settings)
        workers: list[asyncio.subprocess.Process] = []
        try:
            await database.migrate(SPEC.versions)
            await bus.start()
            await bus.ensure_topics([*SPEC.produces, topics.INVOICES])
            await _insert_due(database, sweep_accounts)
            config = {
                "service_name": SPEC.name,
                "data_dir": str(data_dir),
                "topic_prefix": settings.topic_prefix,
                "database_schema": settings.database_schema,
                "clock": "manual",
            }
            workers = [await _start_worker(config) for _ in range(processes)]
            await _until_assigned(workers, settings.bus_partitions)
            started = time.perf_counter()
            await publish_issued(bus, events)
            await _until_applied(database, events, workers)
            events_s = time.perf_counter() - started
            started = time.perf_counter()
            for worker in workers:
                _tell(worker, "sweep")
            counts = [await _answer(w, "events") for w in workers]
            sweep_s = time.perf_counter() - started
            await _check(database, events, sweep_accounts, counts)
            return Run(processes, events_s, sweep_s, counts)
        finally:
            for worker in workers:
                await _stop(worker)
            await bus.close()
            await database.dispose()


async def _insert_due(database: Database, accounts: int) -> None:
    state = _template()
    for start in range(0, accounts, INSERT_BATCH):
        rows = [_due_row(i, state) for i in range(start, min(accounts, start + INSERT_BATCH))]
        async with database.transaction() as session:
            await session.execute(insert(storage.accounts), rows)


# -- the parent's side of the workers ----------------------------------------------------


async def _start_worker(config: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.scale_out",
        "worker",
        json.dumps(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=os.environ.copy(),
    )


def _tell(worker: asyncio.subprocess.Process, command: str) -> None:
    assert worker.stdin is not None
    worker.stdin.write(f"{command}\n".encode())


async def _answer(worker: asyncio.subprocess.Process, key: str) -> dict[str, Any]:
    """The worker's next JSON line that has ``key``."""
    assert worker.stdout is not None
    async with asyncio.timeout(900):
        while True:
            line = await worker.stdout.readline()
            if not line:
                raise RuntimeError(f"a worker exited ({await worker.wait()}) before {key!r}")
            if line.startswith(b"{"):
                answer: dict[str, Any] = json.loads(line)
                if key in answer:
                    return answer


async def _until_assigned(workers: Sequence[asyncio.subprocess.Process], partitions: int) -> None:
    """Until every worker owns partitions and together all of them (after the
    rebalance a second member causes): events published before would go to one."""
    owned = [0] * len(workers)
    pending = {asyncio.ensure_future(_answer(w, "assigned")): i for i, w in enumerate(workers)}
    async with asyncio.timeout(180):
        while not (all(owned) and sum(owned) == partitions):
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                i = pending.pop(future)
                owned[i] = int(future.result()["assigned"])
                pending[asyncio.ensure_future(_answer(workers[i], "assigned"))] = i
    for future in pending:
        future.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def _until_applied(
    database: Database, events: int, workers: Sequence[asyncio.subprocess.Process]
) -> None:
    async with asyncio.timeout(900):
        while await _count(database, select(func.count()).select_from(inbox)) < events:
            if any(w.returncode is not None for w in workers):
                raise RuntimeError("a worker exited while consuming")
            await asyncio.sleep(0.02)


async def _stop(worker: asyncio.subprocess.Process) -> None:
    if worker.returncode is None:
        worker.terminate()
    try:
        async with asyncio.timeout(30):
            await worker.wait()
    except TimeoutError:
        worker.kill()
        await worker.wait()


async def _count(database: Database, query: Any) -> int:
    async with database.sessions() as session:
        return int((await session.execute(query)).scalar_one())


async def _check(
    database: Database, events: int, sweep_accounts: int, counts: Sequence[dict[str, Any]]
) -> None:
    """No event applied twice and no account swept twice (see the module docstring)."""
    inputs = (
        select(timeline.c.account_id, func.count().label("n"))
        .where(timeline.c.tenant == "bench", timeline.c.kind == "input")
        .group_by(timeline.c.account_id)
        .subquery()
    )
    stages = (
        select(timeline.c.account_id, func.count().label("n"))
        .where(timeline.c.tenant == "sweep", timeline.c.kind == "stage")
        .group_by(timeline.c.account_id)
        .subquery()
    )
    applied = await _count(database, select(func.count()).select_from(inbox))
    most_inputs = await _count(database, select(func.coalesce(func.max(inputs.c.n), 0)))
    swept = await _count(database, select(func.count()).select_from(stages))
    most_stages = await _count(database, select(func.coalesce(func.max(stages.c.n), 0)))
    assert applied == events, f"the inbox holds {applied} of {events} events"
    assert most_inputs == PER_ACCOUNT, f"an account has {most_inputs} invoices of {PER_ACCOUNT}"
    assert sum(int(c["events"]) for c in counts) == events, counts
    assert swept == sweep_accounts, f"{swept} of {sweep_accounts} accounts swept"
    assert most_stages == 1, f"an account was swept {most_stages} times"
    assert sum(int(c["swept"]) for c in counts) == sweep_accounts, counts


# -- a worker ---------------------------------------------------------------------------------


def _say(**figures: Any) -> None:
    print(json.dumps(figures), flush=True)


async def _worker(config: dict[str, Any]) -> None:
    """dunning-svc's handler and sweep in this process: reports its partitions while it
    consumes; on ``sweep`` sweeps, then reports what it did; runs until terminated."""
    if limit := os.environ.get("BENCH_SCALE_MAX_ACCOUNT_LOCKS"):
        locks.MAX_ACCOUNT_LOCKS = int(limit)  # the tenant lock of old, for a before figure
    settings = SPEC.settings_type(**config)
    waited = _time_lock_waits()
    database = Database.from_settings(settings)
    bus = create_bus(settings)
    await bus.start()
    runtime = _Runtime(ManualClock(NOW), Outbox(), database)
    book = PolicyBook()
    applied = 0

    async def handle(session: Any, envelopes: Sequence[Envelope]) -> None:
        def count() -> None:
            nonlocal applied
            applied += len(envelopes)

        await apply_events(session, runtime, book, envelopes)  # type: ignore[arg-type]
        on_commit(session, count)

    consumer = EventConsumer(
        bus,
        database,
        Subscription(GROUP, (topics.INVOICES,), batch_handler=handle),
        batch_size=CONSUME_BATCH,
    )
    task = asyncio.create_task(consumer.run())
    command = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    cpu = time.process_time()
    owned = -1
    while not command.done():
        if len(consumer.consumer.assignment()) != owned:
            owned = len(consumer.consumer.assignment())
            _say(assigned=owned)
        await asyncio.wait({command, task}, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # a consumer that stopped: its error
    cpu_events = time.process_time() - cpu
    lock_wait = waited[0]
    swept = await jobs.sweep(runtime)  # type: ignore[arg-type]
    _say(
        events=applied,
        swept=swept,
        cpu_events_s=cpu_events,
        lock_wait_s=lock_wait,
        cpu_sweep_s=time.process_time() - cpu - cpu_events,
    )
    await asyncio.to_thread(sys.stdin.readline)  # until the parent closes it or stops us
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bus.close()
    await database.dispose()


def _time_lock_waits() -> list[float]:
    """Make the handler's ``lock_accounts`` add the seconds it waits to the one-item list
    returned: how long chunks queued on each other's locks (the tenant lock of old)."""
    waited = [0.0]
    take = vars(commands)["lock_accounts"]  # the name commands.process calls

    async def timed(session: Any, keys: Any) -> None:
        started = time.perf_counter()
        await take(session, keys)
        waited[0] += time.perf_counter() - started

    vars(commands)["lock_accounts"] = timed
    return waited


def main(argv: Sequence[str]) -> None:
    """``worker <settings JSON>``: one worker process (the parent starts them)."""
    from benchmarks.__main__ import quiet_logs

    if len(argv) != 2 or argv[0] != "worker":
        raise SystemExit("usage: python -m benchmarks.scale_out worker '<settings JSON>'")
    quiet_logs()
    asyncio.run(_worker(json.loads(argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])
