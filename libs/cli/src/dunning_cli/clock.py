"""Move the platform's manual clock and wait until the work it makes due is done.

``advance`` moves in steps of at most one day, so each day's work happens on its day:
per step every service's clock is set (``PUT /v1/admin/clock``), then each service
runs its due work (``POST /v1/admin/tick``) in the order invoice, payment, dunning,
notify, and after a tick that set something in motion the command waits until the
platform has settled: every
``dunning_consumer_lag`` and ``dunning_outbox_backlog`` is 0 on two scrapes in a row,
and no notice that is due is still pending in notify-svc.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from dunning_cli.metrics import Reading, scrape
from dunning_cli.platform import Platform, Unreachable, call

ONE_DAY = timedelta(days=1)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_DURATION = re.compile(r"(\d+)([wdhms])")
#: How long one step may take to settle before the command gives up and says where.
SETTLE_TIMEOUT_S = 120.0
_POLL_S = 0.02
#: Ticks in this order, waiting for the platform to settle after each group: invoice-svc's
#: overdue detection and payment-svc's work (independent of each other) reach dunning-svc
#: before its timers run, and its notices reach notify-svc before notify-svc sends.
TICK_ORDER = (("invoice-svc", "payment-svc"), ("dunning-svc",), ("notify-svc",))


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``90m``, ``1w``, ``30s`` or a sum such as ``1d12h``; ValueError else."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration such as 7d, 12h, 90m or 1w")
    delta = sum((timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), timedelta())
    if delta <= timedelta():
        raise ValueError(f"{text!r} does not move the clock forward")
    return delta


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with an offset (``2026-03-01T09:00:00+00:00``, ``...Z``)."""
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 instant") from None
    if instant.tzinfo is None:
        raise ValueError(f"{text!r} has no offset: write e.g. {text}+00:00 or {text}Z")
    return instant


async def admin(
    platform: Platform, client: httpx.AsyncClient, name: str, method: str, path: str, **body: str
) -> Any:
    """An admin call to service ``name``; a 404 means the platform runs on the system clock."""
    try:
        return await call(
            client, platform.service(name), method, path, key=platform.admin_key, json=body or None
        )
    except Unreachable as exc:
        if exc.status == 404:
            raise Unreachable(
                f"{name} has no manual clock: start the platform without DUNNING_CLOCK "
                "(or with DUNNING_CLOCK=manual) to move time",
                404,
            ) from None
        raise


async def now(platform: Platform, client: httpx.AsyncClient) -> datetime:
    """The platform's time: the latest of its services' clocks."""
    instants = []
    for service in platform.services:
        body = await admin(platform, client, service.name, "GET", "/v1/admin/clock")
        instants.append(datetime.fromisoformat(body["now"]))
    return max(instants)


async def set_clock(platform: Platform, client: httpx.AsyncClient, instant: datetime) -> None:
    """Set every service's clock to ``instant`` (each refuses to go back: a 409)."""
    for service in platform.services:
        await admin(
            platform, client, service.name, "PUT", "/v1/admin/clock", now=instant.isoformat()
        )


async def step(platform: Platform, client: httpx.AsyncClient, instant: datetime) -> None:
    """Set every clock to ``instant``, run each service's due work in order, wait for it."""
    await set_clock(platform, client, instant)
    for index, group in enumerate(TICK_ORDER):
        ticked = [platform.service(name) for name in group]
        before = [r.flow for r in await asyncio.gather(*(scrape(client, s) for s in ticked))]
        for name in group:
            await admin(platform, client, name, "POST", "/v1/admin/tick")
        after = [r.flow for r in await asyncio.gather(*(scrape(client, s) for s in ticked))]
        # The first wait also covers what was posted before the step. After that, a tick
        # that neither published nor consumed anything (its counters stand still) set
        # nothing in motion: most days, for dunning-svc and notify-svc, so no wait.
        if index == 0 or after != before:
            await settle(platform, client, instant)
    # A notice requested by the last events may have become due after notify-svc's tick.
    for _ in range(5):
        if not await _due_notices_pending(platform, client, instant):
            return
        await admin(platform, client, "notify-svc", "POST", "/v1/admin/tick")
        await settle(platform, client, instant)
    raise Unreachable("notify-svc keeps due notices pending: see GET /v1/notifications")


async def advance(
    platform: Platform,
    client: httpx.AsyncClient,
    delta: timedelta,
    on_step: Callable[[datetime], None] | None = None,
    *,
    start: datetime | None = None,
) -> datetime:
    """Move the clock forward by ``delta`` in steps of at most a day; the new time."""
    begin = start or await now(platform, client)
    steps = max(1, math.ceil(delta / ONE_DAY))
    instant = begin
    for index in range(1, steps + 1):
        instant = min(begin + index * ONE_DAY, begin + delta)
        await step(platform, client, instant)
        if on_step is not None:
            on_step(instant)
    return instant


async def settle(platform: Platform, client: httpx.AsyncClient, instant: datetime) -> None:
    """Wait until nothing is left to consume or publish anywhere (bounded).

    Two idle scrapes in a row: an event published between two scrapes of the round
    would otherwise slip between them. A service that does not export the lag and
    backlog gauges yet is judged by its event counters standing still for three rounds.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    quiet, last_flow = 0, -1.0
    while True:
        readings = list(await asyncio.gather(*(scrape(client, s) for s in platform.services)))
        flow = sum(r.flow for r in readings)
        known = all(r.knows_in_flight for r in readings)
        idle = all(r.idle for r in readings if r.knows_in_flight)
        # Without the gauges, the counters must also stand still (a consumer sees a
        # new record within ~50 ms; three rounds are longer than that).
        quiet = quiet + 1 if idle and (known or flow == last_flow) else 0
        last_flow = flow
        if quiet >= (2 if known else 3):
            return
        if time.monotonic() > deadline:
            raise Unreachable(
                f"the platform did not settle at {instant.isoformat()}: {_busy(readings)}"
            )
        await asyncio.sleep(_POLL_S)


def _busy(readings: list[Reading]) -> str:
    lags = {t: v for r in readings for t, v in r.lag_by_topic.items() if v}
    backlog = sum(r.backlog or 0 for r in readings)
    return f"consumer lag {lags or 0}, outbox backlog {backlog:g}"


async def _due_notices_pending(
    platform: Platform, client: httpx.AsyncClient, instant: datetime
) -> bool:
    """True when some tenant has a pending notice whose time has come."""
    notify = platform.service("notify-svc")
    for key in platform.tenant_keys.values():
        cursor: str | None = None
        while True:
            params = {"status": "pending", "limit": "100"}
            if cursor:
                params["cursor"] = cursor
            page = await call(client, notify, "GET", "/v1/notifications", key=key, params=params)
            for item in page["items"]:
                due = item.get("due_at")
                if due is None or datetime.fromisoformat(due) <= instant.astimezone(UTC):
                    return True
            cursor = page.get("next_cursor")
            if not cursor:
                break
    return False
