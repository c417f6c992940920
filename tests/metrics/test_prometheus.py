"""A real Prometheus scrapes two running services and reads the metrics back.

invoice-svc and dunning-svc run under uvicorn on free ports, on the run's backends, with
their clocks on 1 March 2026; Prometheus (Debian's package, started by
tests/support/prometheus.py) scrapes both every second. Both run in this process and so
share prometheus_client's registry: each query names its job (the service scraped). Three invoices posted to
invoice-svc are published, consumed by dunning-svc and become three accounts in
``current``; every figure is then read through Prometheus's query API.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
from prometheus_client import REGISTRY

from dunning_events import topics
from dunning_runtime.app import create_app
from dunning_svc.main import SPEC as DUNNING
from invoice_svc.main import SPEC as INVOICE
from tests.support.fixtures import ADMIN
from tests.support.prometheus import Prometheus, Sample, require_prometheus
from tests.support.serving import serving

ACME = {"Authorization": "Bearer acme-key"}
START = "2026-03-01T10:00:00Z"
AMOUNTS = ("100.00", "250.50", "1000.00")


def invoice(n: int, amount: str) -> dict[str, object]:
    """An invoice of its own account, due 3 March 2026 (so current on 1 March)."""
    return {
        "invoice_id": f"INV-{n}",
        "account_id": f"ACC-{n}",
        "account_name": "Account",
        "contact": {"name": "Accounts Payable", "email": "ap@example.com"},
        "currency": "EUR",
        "amount_due": amount,
        "issue_date": "2026-02-01",
        "due_date": "2026-03-03",
        "terms": {"net_days": 30},
    }


def local_value(name: str, labels: dict[str, str]) -> float:
    """A metric's value in this process now (counters are shared by every test of it)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def equals(expected: float) -> object:
    def check(samples: list[Sample]) -> bool:
        return len(samples) == 1 and abs(samples[0].value - expected) < 1e-6

    return check


async def test_prometheus_reads_http_events_lag_backlog_and_accounts(
    settings_factory, tmp_path: Path
) -> None:
    require_prometheus()
    posted = {"service": "invoice-svc", "method": "POST", "route": "/v1/invoices", "status": "201"}
    missing = {**posted, "method": "GET", "route": "/v1/invoices/{invoice_id}", "status": "404"}
    published = {"service": "invoice-svc", "topic": topics.INVOICES}
    consumed = {
        "service": "dunning-svc",
        "group": "dunning-svc",
        "topic": topics.INVOICES,
        "outcome": "applied",
    }
    before = {
        "posted": local_value("dunning_http_request_duration_seconds_count", posted),
        "missing": local_value("dunning_http_request_duration_seconds_count", missing),
        "published": local_value("dunning_events_published_total", published),
        "consumed": local_value("dunning_events_consumed_total", consumed),
    }
    invoice_app = create_app(INVOICE, settings_factory("invoice-svc", clock="manual"))
    dunning_app = create_app(DUNNING, settings_factory("dunning-svc", clock="manual"))
    async with (
        serving(invoice_app) as invoice_url,
        serving(dunning_app) as dunning_url,
        httpx.AsyncClient(base_url=invoice_url, timeout=30) as invoices,
        httpx.AsyncClient(base_url=dunning_url, timeout=30) as dunning,
    ):
        for client in (invoices, dunning):
            clock = await client.put("/v1/admin/clock", json={"now": START}, headers=ADMIN)
            assert clock.status_code == 200, clock.text
        targets = {
            "invoice-svc": [str(urlsplit(invoice_url).netloc)],
            "dunning-svc": [str(urlsplit(dunning_url).netloc)],
        }
        with Prometheus.scraping(targets, tmp_path / "prometheus") as prometheus:
            for n, amount in enumerate(AMOUNTS, 1):
                response = await invoices.post(
                    "/v1/invoices", json=invoice(n, amount), headers=ACME
                )
                assert response.status_code == 201, response.text
            assert (await invoices.get("/v1/invoices/NOPE", headers=ACME)).status_code == 404

            # HTTP latency by route template and status.
            await prometheus.wait_for_series_async(
                'dunning_http_request_duration_seconds_count{job="invoice-svc",service="invoice-svc",'
                'method="POST",route="/v1/invoices",status="201"}',
                equals(before["posted"] + 3),
            )
            await prometheus.wait_for_series_async(
                'dunning_http_request_duration_seconds_count{job="invoice-svc",service="invoice-svc",'
                'method="GET",route="/v1/invoices/{invoice_id}",status="404"}',
                equals(before["missing"] + 1),
            )
            # Events published by invoice-svc's relay and applied by dunning-svc.
            await prometheus.wait_for_series_async(
                f'dunning_events_published_total{{job="invoice-svc",service="invoice-svc",topic="{topics.INVOICES}"}}',
                equals(before["published"] + 3),
            )
            await prometheus.wait_for_series_async(
                'dunning_events_consumed_total{job="dunning-svc",service="dunning-svc",group="dunning-svc",'
                f'topic="{topics.INVOICES}",outcome="applied"}}',
                equals(before["consumed"] + 3),
            )
            # Lag on every partition of the topic, all caught up.
            lag = await prometheus.wait_for_series_async(
                'dunning_consumer_lag{job="dunning-svc",service="dunning-svc",group="dunning-svc",'
                f'topic="{topics.INVOICES}"}}',
                lambda s: len(s) == 8 and sum(x.value for x in s) == 0,
            )
            assert {x.labels["partition"] for x in lag} == {str(p) for p in range(8)}
            assert {x.labels["job"] for x in lag} == {"dunning-svc"}
            # Nothing left in invoice-svc's outbox.
            await prometheus.wait_for_series_async(
                'dunning_outbox_backlog{job="invoice-svc",service="invoice-svc"}', equals(0)
            )
            await prometheus.wait_for_series_async(
                'dunning_outbox_oldest_age_seconds{job="invoice-svc",service="invoice-svc"}',
                equals(0),
            )
            # The business gauges: three accounts in current, their balance not yet aged.
            await prometheus.wait_for_series_async(
                'dunning_accounts{job="dunning-svc",tenant="acme",stage="current",segment="standard"}',
                equals(3),
            )
            await prometheus.wait_for_series_async(
                'dunning_open_balance{job="dunning-svc",tenant="acme",currency="EUR"}',
                equals(1350.5),
            )
            await prometheus.wait_for_series_async(
                'dunning_aging_balance{job="dunning-svc",tenant="acme",currency="EUR",bucket="current"}',
                equals(1350.5),
            )
            await prometheus.wait_for_series_async(
                'dunning_overdue_balance{job="dunning-svc",tenant="acme",currency="EUR"}', equals(0)
            )
            # A PromQL aggregation over the scraped series works like any other.
            total = await prometheus.query_async(
                'sum by (stage) (dunning_accounts{job="dunning-svc",tenant="acme"})'
            )
            assert [(s.labels, s.value) for s in total] == [({"stage": "current"}, 3.0)]
