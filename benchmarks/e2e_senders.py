"""The end-to-end benchmark's senders: ``POST /v1/payments`` on schedule from processes of
their own, and the CPU the services spend meanwhile.

One asyncio process sending JSON over HTTP (httpx) costs about as much CPU per request
as the service answering it, so a single sender in the bench process (which also polls
dunning-svc) could not send much more than one service process answers, and its CPU
showed up as the platform's. Here ``senders`` processes share the schedule: payment ``i``
is due at ``began + i / rate`` (open loop, as before) and sender ``k`` sends the payments
with ``i % senders == k``. ``time.perf_counter`` is the system's monotonic clock, so the
times they report are comparable with the poller's in the bench process.

What a service spent is read from ``/proc/<pid>/stat`` (user + system time) of its
process, before and after the sending, so the senders' CPU is not counted as its.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

#: When each payment went out and came back (perf_counter seconds), and its status.
Report = list[tuple[int, float, float, int]]


@dataclass(frozen=True)
class Schedule:
    """What every sender needs: where to send, what, and when."""

    url: str
    headers: dict[str, str]
    rate: float
    total: int
    senders: int
    #: The name in ``benchmarks.e2e`` of the function building payment ``i``'s body
    #: (looked up by name: a spawned process imports it).
    body: str


def send_all(schedule: Schedule) -> tuple[float, Report]:
    """Run ``schedule.senders`` sender processes; returns the schedule's start (when every
    sender was ready) and their reports, merged in payment order."""
    context = multiprocessing.get_context("spawn")
    # Spawned processes take seconds to start here: the clock starts once all are ready.
    ready = context.Barrier(schedule.senders + 1)
    go = context.Barrier(schedule.senders + 1)
    began = context.Value("d", 0.0)
    results = context.Queue()
    processes = [
        context.Process(target=_sender, args=(schedule, k, ready, go, began, results))
        for k in range(schedule.senders)
    ]
    for process in processes:
        process.start()
    ready.wait()
    began.value = time.perf_counter() + 0.05
    go.wait()
    report = [item for _ in processes for item in results.get()]
    for process in processes:
        process.join()
    return began.value, sorted(report)


def _sender(schedule: Schedule, k: int, ready: Any, go: Any, began: Any, results: Any) -> None:
    from benchmarks import e2e  # the payment bodies: one definition

    build = getattr(e2e, schedule.body)
    ready.wait()
    go.wait()
    results.put(asyncio.run(_send(schedule, k, began.value, build)))


async def _send(
    schedule: Schedule, k: int, began: float, build: Callable[[int], dict[str, str]]
) -> Report:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    report: Report = []
    async with httpx.AsyncClient(
        base_url=schedule.url, headers=schedule.headers, limits=limits, timeout=60
    ) as client:

        async def post(i: int, sent: float) -> None:
            body = build(i)
            try:
                response = await client.post("/v1/payments", json=body)
            except httpx.TransportError:
                # A keep-alive connection closed under us: the same POST again is idempotent.
                response = await client.post("/v1/payments", json=body)
            report.append((i, sent, time.perf_counter(), response.status_code))
            if response.status_code not in (200, 201) and len(report) < 3:
                print(f"  e2e: POST /v1/payments -> {response.status_code}: {response.text[:300]}")

        tasks = []
        for i in range(k, schedule.total, schedule.senders):
            delay = began + i / schedule.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i, time.perf_counter())))
        await asyncio.gather(*tasks)
    return report


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` has used so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces: count the fields after its ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
