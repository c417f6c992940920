"""The runtime's Prometheus metrics, shared by every service (docs/metrics.md lists them).

Every metric here has a ``service`` label, because tests and ``make run`` may hold
several services in one process and they share prometheus_client's default registry.

Counters are incremented where things happen (consumer, outbox relay, HTTP middleware);
gauges that describe state (consumer lag, outbox backlog, a service's business figures)
are computed when ``/metrics`` is scraped, by a ``ScrapeRefresh``: one refresh at a time,
not more often than ``min_interval_s``, and the scrape waits for it at most
``timeout_s`` (then it shows the previous values and the refresh finishes in the
background), so a scrape storm or a slow database cannot pile work up.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select
from starlette.routing import compile_path

from dunning_runtime import logs
from dunning_runtime.db import Database, utc
from dunning_runtime.messaging_tables import outbox

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from dunning_runtime.bus.port import Bus

log = logging.getLogger(__name__)

HTTP_REQUEST_DURATION = Histogram(
    "dunning_http_request_duration_seconds",
    "HTTP requests by route template and status, from the request's arrival to the end of "
    "its response",
    ["service", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVENTS_CONSUMED = Counter(
    "dunning_events_consumed_total",
    "Events consumed, by outcome (applied, duplicate, dead_lettered)",
    ["service", "group", "topic", "outcome"],
)
EVENTS_PUBLISHED = Counter(
    "dunning_events_published_total",
    "Events the outbox relay published to the bus",
    ["service", "topic"],
)
EVENTS_DEAD_LETTERED = Counter(
    "dunning_events_dead_lettered_total",
    "Events a consumer sent to the topic's dead-letter topic",
    ["service", "group", "topic"],
)
TRANSIENT_RETRIES = Counter(
    "dunning_consumer_transient_retries_total",
    "Chunks retried after a transient failure (database or broker away)",
    ["service", "group"],
)
CONSUMER_LAG = Gauge(
    "dunning_consumer_lag",
    "Records not yet committed by the group: end offset minus committed offset",
    ["service", "group", "topic", "partition"],
)
OUTBOX_BACKLOG = Gauge("dunning_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "dunning_outbox_oldest_age_seconds",
    "Age of the oldest outbox row not yet published (0 when none)",
    ["service"],
)

#: Paths whose requests are not timed: probes and the scrape itself would drown the rest.
UNTIMED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


class RequestTimer:
    """ASGI middleware: observe each request's duration by its route template and status.

    The template comes from the route Starlette matched (``scope["route"]``, set as the
    request is routed), so ``/v1/invoices/inv-1`` counts as ``/v1/invoices/{invoice_id}``
    and the label set stays small. A request refused before routing (no key, too large)
    is matched against the app's documented paths here; one no route matches is
    ``unmatched``.
    It also names the service in the request's log lines (``logs.SERVICE``).
    """

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service
        self._templates: list[tuple[re.Pattern[str], str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time one HTTP request (other scopes pass through)."""
        if scope["type"] != "http" or scope["path"] in UNTIMED_PATHS:
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        logs.SERVICE.set(self.service)  # this request's task only
        status = 500  # an exception before the response started is a 500 to the client

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            HTTP_REQUEST_DURATION.labels(
                self.service, scope["method"], self.template(scope), str(status)
            ).observe(time.perf_counter() - began)

    def template(self, scope: Scope) -> str:
        """The path template of the route that served (or would have served) ``scope``."""
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", "unmatched"))
        # Refused before routing (no key, too large): match the documented paths (rare).
        if self._templates is None:
            paths = scope["app"].openapi().get("paths", {}) if "app" in scope else {}
            # Literal segments before parameters: /v1/invoices/batch, not /{invoice_id}.
            ordered = sorted(paths, key=lambda p: p.count("{"))
            self._templates = [(compile_path(p)[0], p) for p in ordered]
        for pattern, template in self._templates:
            if pattern.match(scope["path"]):
                return template
        return "unmatched"


class ScrapeRefresh:
    """Runs ``work`` when a scrape asks, at most once per ``min_interval_s``, one at a time;
    the caller waits at most ``timeout_s`` for it."""

    def __init__(
        self,
        work: Callable[[], Awaitable[None]],
        *,
        name: str,
        timeout_s: float = 2.0,
        min_interval_s: float = 1.0,
    ) -> None:
        self.work = work
        self.name = name
        self.timeout_s = timeout_s
        self.min_interval_s = min_interval_s
        self._task: asyncio.Task[None] | None = None
        self._finished_at = float("-inf")

    async def __call__(self) -> None:
        """Refresh (or join the refresh under way), waiting at most ``timeout_s``."""
        if self._task is None or self._task.done():
            if time.monotonic() - self._finished_at < self.min_interval_s:
                return  # fresh enough: a scrape storm costs nothing
            self._task = asyncio.create_task(self._run(), name=f"{self.name} metrics refresh")
        await asyncio.wait({self._task}, timeout=self.timeout_s)

    async def _run(self) -> None:
        try:
            await self.work()
        except Exception as exc:
            # The gauges keep their last values; the scrape itself must not fail.
            log.warning("%s: refreshing metrics failed: %s: %s", self.name, type(exc).__name__, exc)
        finally:
            self._finished_at = time.monotonic()

    async def close(self) -> None:
        """Cancel a refresh still running (at a stop, before the database closes)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class GaugeSeries:
    """One service's series of a gauge, replaced as a whole at each refresh: a label set
    that is gone (a partition no longer consumed, a stage no account is in) is removed
    rather than left at its last value."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self._shown: set[tuple[str, ...]] = set()

    def replace(self, values: Mapping[tuple[str, ...], float]) -> None:
        """Show exactly ``values`` (label values in the gauge's label order)."""
        for labels in self._shown - set(values):
            self.gauge.remove(*labels)
        for labels, value in values.items():
            self.gauge.labels(*labels).set(value)
        self._shown = set(values)


async def consumer_lag(
    bus: Bus, groups: Iterable[tuple[str, tuple[str, ...]]]
) -> dict[tuple[str, str, int], int]:
    """Lag per ``(group, topic, partition)``: the topic's end offset minus the group's
    committed offset (0 when the group never committed there: it reads from the start)."""
    lag: dict[tuple[str, str, int], int] = {}
    ends: dict[str, dict[int, int]] = {}
    for group, topics in groups:
        committed = await bus.committed_offsets(group, topics)
        for topic in topics:
            if topic not in ends:
                ends[topic] = await bus.end_offsets(topic)
            for partition, end in ends[topic].items():
                lag[(group, topic, partition)] = max(0, end - committed.get((topic, partition), 0))
    return lag


async def outbox_backlog(database: Database) -> tuple[int, float]:
    """Rows waiting in the outbox and the age in seconds of the oldest (0 when none)."""
    async with database.sessions() as session:
        count, oldest = (
            await session.execute(select(func.count(), func.min(outbox.c.created_at)))
        ).one()
    oldest_at = utc(oldest)
    if not count or oldest_at is None:
        return 0, 0.0
    # created_at is the wall-clock time the row was written (Outbox.add).
    return int(count), max(0.0, (datetime.now(UTC) - oldest_at).total_seconds())


class RuntimeGauges:
    """The runtime gauges of one service (lag, outbox backlog), refreshed on scrape."""

    def __init__(
        self,
        service: str,
        bus: Bus,
        database: Database,
        groups: Callable[[], list[tuple[str, tuple[str, ...]]]],
    ) -> None:
        self.service = service
        self.bus = bus
        self.database = database
        self.groups = groups
        self.lag = GaugeSeries(CONSUMER_LAG)

    async def refresh(self) -> None:
        """Read lag and backlog now and set the gauges."""
        backlog, age = await outbox_backlog(self.database)
        OUTBOX_BACKLOG.labels(self.service).set(backlog)
        OUTBOX_OLDEST_AGE.labels(self.service).set(age)
        lag = await consumer_lag(self.bus, self.groups())
        self.lag.replace({(self.service, g, t, str(p)): float(v) for (g, t, p), v in lag.items()})
