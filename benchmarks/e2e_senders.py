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
from dataclasses import dataclass

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
    began: float
    senders: int
    #: Builds payment ``i``'s request body (module-level, so a spawned process has it).
    body: str


def send_all(schedule: Schedule) -> Report:
    """Run ``schedule.senders`` sender processes and return their reports, merged in
    payment order."""
    if schedule.senders == 1:
        return asyncio.run(_send(schedule, 0))
    context = multiprocessing.get_context("spawn")
    with context.Pool(schedule.senders) as pool:
        parts = pool.starmap(_sender, [(schedule, k) for k in range(schedule.senders)])
    return sorted(item for part in parts for item in part)


def _sender(schedule: Schedule, k: int) -> Report:
    return asyncio.run(_send(schedule, k))


async def _send(schedule: Schedule, k: int) -> Report:
    from benchmarks import e2e  # the payment bodies: one definition

    build = getattr(e2e, schedule.body)
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
            delay = schedule.began + i / schedule.rate - time.perf_counter()
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
