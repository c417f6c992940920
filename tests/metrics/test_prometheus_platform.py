"""A real Prometheus scrapes the whole platform, four OS processes, after a dunning flow.

The platform harness (tests/support/platform.py) starts the four services as ``make run``
does, mail going to a real SMTP server. One invoice is posted, the clocks move a day past
its due date, dunning-svc escalates the account and notify-svc sends the notice; then
Prometheus scrapes every service and each figure of that flow is read back through its
query API: the decision, the notice and its send time, the account's stage and overdue
balance, caught-up consumers and empty outboxes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.platform import Platform
from tests.support.prometheus import Prometheus, Sample, require_prometheus
from tests.support.smtp import MailServer

DUE = "2027-01-12"
AMOUNT = 480.25


def at_least(minimum: float) -> Callable[[list[Sample]], bool]:
    return lambda samples: sum(s.value for s in samples) >= minimum


def exactly(expected: float) -> Callable[[list[Sample]], bool]:
    return lambda samples: bool(samples) and abs(sum(s.value for s in samples) - expected) < 1e-6


def test_prometheus_scrapes_four_services_after_a_dunning_flow(tmp_path: Path) -> None:
    require_prometheus()
    with (
        MailServer() as mail,
        Platform(tmp_path / "platform", env={"DUNNING_SMTP_URL": mail.url}) as platform,
    ):
        invoices = platform.client("acme", "invoice-svc")
        posted = invoices.post(
            "/v1/invoices",
            json={
                "invoice_id": "PROM-1",
                "account_id": "PROM-ACC",
                "account_name": "Prometheus GmbH",
                "contact": {"name": "Accounts Payable", "email": "ap@prometheus.example"},
                "currency": "EUR",
                "amount_due": f"{AMOUNT:.2f}",
                "issue_date": "2027-01-04",
                "due_date": DUE,
                "timezone": "Europe/Berlin",
                "terms": {"net_days": 8},
            },
        )
        assert posted.status_code == 201, posted.text
        platform.advance(datetime(2027, 1, 13, 10, tzinfo=UTC))
        assert mail.wait_for_count(1, to="ap@prometheus.example")

        targets = {s: [urlsplit(platform.url(s)).netloc] for s in platform.services}
        with Prometheus.scraping(targets, tmp_path / "prometheus") as prometheus:
            prometheus.wait_for_series(
                'dunning_http_request_duration_seconds_count{job="invoice-svc",'
                'method="POST",route="/v1/invoices",status="201"}',
                exactly(1),
            )
            decisions = prometheus.wait_for_series(
                'dunning_decisions_total{job="dunning-svc",segment="standard"}', at_least(1)
            )
            assert all(d.labels["from_stage"] != d.labels["to_stage"] for d in decisions)
            prometheus.wait_for_series(
                'dunning_notifications_total{job="notify-svc",channel="email",outcome="sent"}',
                at_least(1),
            )
            prometheus.wait_for_series(
                'dunning_notification_send_duration_seconds_count{job="notify-svc",'
                'channel="email",outcome="sent"}',
                at_least(1),
            )
            # The account left `current`, its whole balance a day overdue.
            prometheus.wait_for_series(
                'dunning_accounts{job="dunning-svc",tenant="acme",stage!="current"}', exactly(1)
            )
            prometheus.wait_for_series(
                'dunning_overdue_balance{job="dunning-svc",tenant="acme",currency="EUR"}',
                exactly(AMOUNT),
            )
            prometheus.wait_for_series(
                'dunning_aging_balance{job="dunning-svc",tenant="acme",currency="EUR",'
                'bucket="1-30"}',
                exactly(AMOUNT),
            )
            # Every event consumed: the commands topic carried the notice to notify-svc.
            prometheus.wait_for_series(
                'dunning_events_consumed_total{job="notify-svc",topic="dunning.commands",'
                'outcome="applied"}',
                at_least(1),
            )
            prometheus.wait_for_series(
                'dunning_events_published_total{job="dunning-svc",topic="dunning.commands"}',
                at_least(1),
            )
            lag = prometheus.wait_for_series(
                "dunning_consumer_lag", lambda s: {x.labels["job"] for x in s} == set(targets)
            )
            assert sum(x.value for x in lag) == 0
            backlog = prometheus.wait_for_series(
                "dunning_outbox_backlog", lambda s: len(s) == len(targets)
            )
            assert {(b.labels["service"], b.value) for b in backlog} == {(s, 0.0) for s in targets}
