"""``dunning status``: each service's readiness and the work in flight, as a table."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from rich.table import Table

from dunning_cli.metrics import Reading, scrape
from dunning_cli.platform import Platform, Service, Unreachable, send


@dataclass(frozen=True)
class ServiceStatus:
    """What one service said, or why it said nothing."""

    service: Service
    ready: bool
    detail: str  # "ready", what /readyz names as down, or why it is unreachable
    reading: Reading | None  # None when /metrics did not answer


async def read_status(platform: Platform, client: httpx.AsyncClient) -> list[ServiceStatus]:
    """Readiness and metrics of every service; an unreachable one is a row, not an error."""
    found = []
    for service in platform.services:
        try:
            response = await send(client, service, "GET", "/readyz")
        except Unreachable:
            found.append(ServiceStatus(service, False, "unreachable", None))
            continue
        ready = response.status_code == 200
        detail = "ready" if ready else _not_ready(response)
        try:
            reading: Reading | None = await scrape(client, service)
        except Unreachable:
            reading = None
        found.append(ServiceStatus(service, ready, detail, reading))
    return found


def _not_ready(response: httpx.Response) -> str:
    """Which checks or tasks /readyz names as not ok."""
    try:
        body = response.json()
    except ValueError:
        return f"not ready ({response.status_code})"
    down = [
        f"{name}: {state}"
        for part in ("checks", "tasks")
        for name, state in (body.get(part) or {}).items()
        if state != "ok"
    ]
    return "not ready" + (f" ({'; '.join(down)})" if down else "")


def _per_topic(values: dict[str, float]) -> str:
    if not values:
        return "0"
    return "\n".join(f"{topic} {value:g}" for topic, value in sorted(values.items()))


def status_table(statuses: list[ServiceStatus]) -> Table:
    """The Rich table ``dunning status`` prints."""
    table = Table(title="dunning platform")
    table.add_column("service", no_wrap=True)
    table.add_column("URL", no_wrap=True)
    for column in ("ready", "consumer lag", "outbox backlog", "dead letters"):
        table.add_column(column)
    for status in statuses:
        style = "green" if status.ready else "red"
        reading = status.reading
        if reading is None:
            lag = backlog = dead = "-"
        else:
            lag = _per_topic(reading.lag_by_topic) if reading.has_lag else "n/a"
            if reading.backlog is None:
                backlog = "n/a"
            else:
                backlog = f"{reading.backlog:g} rows, oldest {reading.oldest_age_s or 0:.0f}s"
            dead = _per_topic(reading.dead_lettered_by_topic)
        table.add_row(
            status.service.name,
            status.service.url,
            f"[{style}]{status.detail}[/{style}]",
            lag,
            backlog,
            dead,
        )
    return table
