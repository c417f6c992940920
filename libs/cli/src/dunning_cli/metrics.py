"""What a service's ``GET /metrics`` says about work in flight (docs: metrics contract).

``dunning_consumer_lag{group,topic,partition}``: records a consumer group has not
committed yet; ``dunning_outbox_backlog``: outbox rows not yet published, with
``dunning_outbox_oldest_age_seconds``; ``dunning_events_dead_lettered_total{group,topic}``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from dunning_cli.platform import Service, Unreachable, send

LAG = "dunning_consumer_lag"
BACKLOG = "dunning_outbox_backlog"
OLDEST = "dunning_outbox_oldest_age_seconds"
DEAD_LETTERED = "dunning_events_dead_lettered_total"
#: Counters that move while events flow: what a service without the gauges is judged by.
FLOW_COUNTERS = ("dunning_events_consumed_total", "dunning_events_published_total")


@dataclass
class Reading:
    """One scrape of a service's /metrics, reduced to what the command shows and waits on."""

    lag_by_topic: dict[str, float] = field(default_factory=dict)
    backlog: float | None = None  # None: the service does not export the gauge
    oldest_age_s: float | None = None
    dead_lettered_by_topic: dict[str, float] = field(default_factory=dict)
    flow: float = 0.0  # the sum of FLOW_COUNTERS: changes while anything moves
    has_lag: bool = False

    @property
    def lag(self) -> float:
        """Records not yet applied by any of its consumer groups, over every topic."""
        return sum(self.lag_by_topic.values())

    @property
    def knows_in_flight(self) -> bool:
        """True when the service exports both gauges the contract promises."""
        return self.has_lag and self.backlog is not None

    @property
    def idle(self) -> bool:
        """Nothing left to consume or publish (only meaningful when knows_in_flight)."""
        return self.lag == 0 and not self.backlog


def parse(text: str, service: str) -> Reading:
    """Reduce the Prometheus text ``text`` of ``service`` to a Reading."""
    reading = Reading()
    lag: dict[str, float] = defaultdict(float)
    dead: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # Several services can share a process (tests): keep this one's samples.
            if sample.labels.get("service", service) != service:
                continue
            if sample.name == LAG:
                reading.has_lag = True
                lag[sample.labels.get("topic", "?")] += sample.value
            elif sample.name == BACKLOG:
                reading.backlog = (reading.backlog or 0.0) + sample.value
            elif sample.name == OLDEST:
                reading.oldest_age_s = max(reading.oldest_age_s or 0.0, sample.value)
            elif sample.name == DEAD_LETTERED:
                dead[sample.labels.get("topic", "?")] += sample.value
            elif sample.name in FLOW_COUNTERS:
                reading.flow += sample.value
    reading.lag_by_topic = dict(lag)
    reading.dead_lettered_by_topic = dict(dead)
    return reading


async def scrape(client: httpx.AsyncClient, service: Service) -> Reading:
    """GET ``/metrics`` of ``service``; Unreachable when it does not answer."""
    response = await send(client, service, "GET", "/metrics")
    if response.status_code != 200:
        raise Unreachable(f"{service.name}: GET /metrics answered {response.status_code}")
    return parse(response.text, service.name)
