"""Every panel's query returns data from a real Prometheus scraping the running platform.

The four services run as OS processes (tests/support/platform.py) on the active backends;
Debian's Prometheus scrapes their /metrics every second (tests/support/prometheus.py).
The test drives what a day of collections produces: invoices, a payment, a refused
request, a poison event a broken producer wrote (so something is dead-lettered), and the
clock moved past the due date so that dunning-svc escalates and notify-svc sends notices
to a real SMTP server. Then each dashboard's queries run with their variables replaced as
Grafana does (*All* selected, then a single tenant), and every one must return at least
one series; a failure names the dashboard, the panel and the query. A few panels must
also show what an operator would act on: the dead letter, the escalated accounts.

Skips locally without Prometheus, fails under CI=true (tests/support/prometheus.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dunning_events import topics
from dunning_runtime.bus import create_bus
from dunning_runtime.settings import load_settings
from tests.dashboards.files import dashboard_files, load_dashboard
from tests.dashboards.queries import (
    GRAFANA_BUILTINS,
    PanelQuery,
    dashboard_queries,
    dashboard_variables,
    substitute,
)
from tests.support.events import message, overdue
from tests.support.platform import Platform
from tests.support.prometheus import Prometheus, Sample, require_prometheus
from tests.support.smtp import MailServer

TENANT = "acme"
START = datetime(2027, 3, 1, 9, tzinfo=UTC)
ISSUED = START.date()
DUE = ISSUED + timedelta(days=14)
ACCOUNTS = ("DASH-1", "DASH-2", "DASH-3")
#: Every counter and histogram bucket of the platform: what the panels take rates of.
COUNTERS = '{__name__=~"dunning_.+_(total|bucket)"}'


def invoice(account: str, number: int) -> dict[str, object]:
    return {
        "invoice_id": f"{account}-INV-{number}",
        "account_id": account,
        "account_name": f"Customer {account}",
        "contact": {"name": "Accounts payable", "email": f"ap-{account.lower()}@example.com"},
        "currency": "EUR",
        "amount_due": "1250.00",
        "issue_date": ISSUED.isoformat(),
        "due_date": DUE.isoformat(),
    }


async def publish_poison_event(platform: Platform) -> None:
    """An undecodable InvoiceOverdue on the invoices topic, as a broken producer would
    write it: dunning-svc and payment-svc both read the topic and dead-letter it."""
    env = platform._env()  # the bus the services use, with the platform's topic prefix
    settings = load_settings(
        "dashboards-test",
        bus_url=env["DUNNING_BUS_URL"],
        topic_prefix=env.get("DUNNING_TOPIC_PREFIX", ""),
        bus_partitions=int(env.get("DUNNING_BUS_PARTITIONS", "8")),
    )
    bus = create_bus(settings)
    await bus.start()
    try:
        good = message(overdue("DASH-POISON", 1, tenant=TENANT))
        assert good.topic == topics.INVOICES
        await bus.publish([replace(good, value=b'{"account_id": 42}')])
    finally:
        await bus.close()


def drive(platform: Platform) -> None:
    """Traffic for every panel: invoices, a payment, refused requests, a dead letter,
    and the clock past the due date (reminders before it, notices after it)."""
    invoices = platform.client(TENANT, "invoice-svc")
    for account in ACCOUNTS:
        response = invoices.post("/v1/invoices", json=invoice(account, 1))
        assert response.status_code == 201, response.text
    payments = platform.client(TENANT, "payment-svc")
    paid = payments.post(
        "/v1/payments",
        json={
            "payment_id": "DASH-PAY-1",
            "account_id": ACCOUNTS[0],
            "currency": "EUR",
            "amount": "1250.00",
            "received_at": START.isoformat(),
            "method": "sepa",
        },
    )
    assert paid.status_code == 201, paid.text
    # Client errors, as the 4xx panels count them.
    assert invoices.get("/v1/invoices/DASH-UNKNOWN").status_code == 404
    wrong = payments.post("/v1/payments", json={"payment_id": "DASH-PAY-2", "method": "cash"})
    assert wrong.status_code == 422
    asyncio.run(publish_poison_event(platform))
    for days_after_due in (-3, 2, 9, 20):
        day = datetime.combine(DUE + timedelta(days=days_after_due), START.timetz())
        platform.advance(day)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A running platform with traffic behind it, and Prometheus scraping it throughout."""
    require_prometheus()  # skip before starting four services for nothing
    workdir = tmp_path_factory.mktemp("dashboards")
    with (
        MailServer() as mail,
        Platform(
            workdir / "platform", env={"DUNNING_SMTP_URL": mail.url}, start_at=START
        ) as platform,
    ):
        targets = [platform.url(name).removeprefix("http://") for name in platform.services]
        with Prometheus.scraping({"dunning": targets}, workdir / "prometheus") as server:
            server.wait_for_series("up", lambda s: len(s) == 4 and all_up(s))
            drive(platform)
            mail.wait_for_count(2)  # the two unpaid accounts' first overdue notices, at least
            # The business gauges are computed on scrape and cached (accounts 5 s, balances,
            # aging and DSO 15 s): wait until Prometheus holds the final state, not the state
            # of a refresh before the clock moved.
            for promql, check in (
                (f'dunning_overdue_balance{{tenant="{TENANT}", currency="EUR"}}', is_(2500)),
                (
                    f'sum(dunning_accounts{{tenant="{TENANT}", stage!~"current|reminder"}})',
                    at_least(2),
                ),
                (f'dunning_dso_days{{tenant="{TENANT}"}}', bool),
                ("dunning_events_dead_lettered_total", bool),
                ('dunning_notifications_total{outcome="sent"}', bool),
                # Rates and increases over a minute need two samples of a counter: every
                # counter and bucket Prometheus holds now it also held 3 s (3 scrapes) ago.
                (
                    f"count({COUNTERS}) - count({COUNTERS} offset 3s)",
                    is_(0),
                ),
            ):
                server.wait_for_series(promql, check)
            yield server


def all_up(samples: list[Sample]) -> bool:
    return all(sample.value == 1 for sample in samples)


def is_(value: float) -> Callable[[list[Sample]], bool]:
    """A check that the query has exactly one sample, of ``value``."""
    return lambda samples: [s.value for s in samples] == [value]


def at_least(value: float) -> Callable[[list[Sample]], bool]:
    """A check that every sample is at least ``value`` (and there is one)."""
    return lambda samples: bool(samples) and all(s.value >= value for s in samples)


def run_all(server: Prometheus, queries: list[tuple[PanelQuery, str]]) -> dict[str, list[Sample]]:
    """Each query's samples, keyed "dashboard: title (refId)"."""
    return {
        f"{q.dashboard}: {q.title}" + (f" ({q.ref_id})" if q.ref_id else ""): server.query(expr)
        for q, expr in queries
    }


def selections() -> list[tuple[Path, dict[str, str]]]:
    """Each dashboard with *All* selected, and with one tenant where it has the variable."""
    cases: list[tuple[Path, dict[str, str]]] = []
    for path in dashboard_files():
        cases.append((path, {}))
        if "tenant" in dashboard_variables(load_dashboard(path)):
            cases.append((path, {"tenant": TENANT}))
    return cases


@pytest.mark.parametrize(
    ("path", "selected"),
    selections(),
    ids=lambda case: case.stem if isinstance(case, Path) else ",".join(case) or "all",
)
def test_every_panel_query_returns_series(
    prometheus: Prometheus, path: Path, selected: dict[str, str]
) -> None:
    dashboard = load_dashboard(path)
    variables = dashboard_variables(dashboard) | selected
    queries = [
        (query, substitute(query.expr, variables, GRAFANA_BUILTINS))
        for query in dashboard_queries(path.stem, dashboard)
    ]
    results = run_all(prometheus, queries)
    empty = [
        f"{name}\n    {expr}"
        for (name, samples), (_, expr) in zip(results.items(), queries, strict=True)
        if not samples
    ]
    assert not empty, "panels without data:\n" + "\n".join(empty)


def panel_samples(server: Prometheus, dashboard: str, title: str) -> list[Sample]:
    board = load_dashboard(next(p for p in dashboard_files() if p.stem == dashboard))
    variables = dashboard_variables(board)
    [query] = [q for q in dashboard_queries(dashboard, board) if q.title == title]
    return server.query(substitute(query.expr, variables, GRAFANA_BUILTINS))


def test_dead_letter_turns_the_dead_letters_panel_red(prometheus: Prometheus) -> None:
    [total] = panel_samples(prometheus, "operations", "Dead letters")
    # Both readers of the invoices topic dead-lettered the poison event; red is >= 1.
    assert total.value >= 2


def test_funnel_shows_the_escalated_accounts(prometheus: Prometheus) -> None:
    stages = {
        s.labels["stage"]: s.value
        for s in panel_samples(prometheus, "collections", "Accounts by stage")
    }
    # DASH-1 paid; DASH-2 and DASH-3 are 20 days overdue, past the first overdue stages.
    escalated = sum(v for stage, v in stages.items() if stage not in ("current", "reminder"))
    assert escalated >= 2, stages
    ranks = {
        s.labels["stage"]: s.labels["rank"]
        for s in panel_samples(prometheus, "collections", "Accounts by stage")
    }
    assert ranks.get("current", "01") == "01"
    assert all(rank < "99" for stage, rank in ranks.items()), ranks


def test_overdue_balance_is_shown_in_its_currency(prometheus: Prometheus) -> None:
    overdue_by_currency = {
        s.labels["currency"]: s.value
        for s in panel_samples(prometheus, "collections", "Overdue balance by currency")
    }
    assert overdue_by_currency == {"EUR": 2500.0}
