"""dunning-svc's business gauges for Prometheus, computed when ``/metrics`` is scraped.

* Accounts by tenant, stage and segment: one GROUP BY over the accounts table, at most
  every ``ACCOUNTS_INTERVAL_S``.
* Open, overdue and aged balances, and DSO, by tenant and currency: balances per
  currency live in each account's state (not in columns), so they come from one pass
  over the accounts, a page at a time, through the very tallies the aging and DSO
  reports use (``views.AgingTally``, ``views.DsoTally``): a dashboard and
  ``GET /v1/reports/aging`` never disagree. The pass is the expensive one, so it runs
  at most every ``BALANCES_INTERVAL_S``.

Days are counted on today's UTC date of the service's clock, as the reports' default.
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import Gauge

from dunning_runtime.app import Runtime, ScrapedGauges
from dunning_runtime.metrics import GaugeSeries
from dunning_svc import commands
from dunning_svc.views import AgingTally, DsoTally, dso_period_start

ACCOUNTS = Gauge(
    "dunning_accounts",
    "Accounts by tenant, dunning stage and segment",
    ["tenant", "stage", "segment"],
)
OPEN_BALANCE = Gauge(
    "dunning_open_balance",
    "Open balance of accounts not written off, in major units",
    ["tenant", "currency"],
)
OVERDUE_BALANCE = Gauge(
    "dunning_overdue_balance",
    "Open balance past its due date, in major units",
    ["tenant", "currency"],
)
AGING_BALANCE = Gauge(
    "dunning_aging_balance",
    "Open balance by days past due (current, 1-30, 31-60, 61-90, 91+), in major units",
    ["tenant", "currency", "bucket"],
)
DSO_DAYS = Gauge(
    "dunning_dso_days",
    "Days sales outstanding over the last 90 days (receivables / credit sales x days), "
    "per currency; absent while the period has no credit sales",
    ["tenant", "currency"],
)

#: The aging report's buckets and their label on ``dunning_aging_balance``.
BUCKET_LABELS = {
    "current": "current",
    "days_1_30": "1-30",
    "days_31_60": "31-60",
    "days_61_90": "61-90",
    "days_over_90": "91+",
}

ACCOUNTS_INTERVAL_S = 5.0
BALANCES_INTERVAL_S = 15.0

_accounts = GaugeSeries(ACCOUNTS)
_open = GaugeSeries(OPEN_BALANCE)
_overdue = GaugeSeries(OVERDUE_BALANCE)
_aging = GaugeSeries(AGING_BALANCE)
_dso = GaugeSeries(DSO_DAYS)


async def refresh_accounts(runtime: Runtime) -> None:
    """Set ``dunning_accounts`` from one GROUP BY."""
    counts = await commands.stage_counts(runtime.database)
    _accounts.replace({key: float(n) for key, n in counts.items()})


async def refresh_balances(runtime: Runtime) -> None:
    """Set the balance, aging and DSO gauges from one pass over every tenant's accounts."""
    today = runtime.clock.now().date()
    start = dso_period_start(today)
    aging: dict[str, AgingTally] = {}
    dso: dict[str, DsoTally] = {}
    async for account in commands.accounts_of(runtime.database):
        tenant = account.tenant
        if tenant not in aging:
            aging[tenant] = AgingTally(today, by_account=False)
            dso[tenant] = DsoTally(start, today)
        aging[tenant].add(account)
        dso[tenant].add(account)
    open_: dict[tuple[str, ...], float] = {}
    overdue: dict[tuple[str, ...], float] = {}
    aged: dict[tuple[str, ...], float] = {}
    for tenant, tally in aging.items():
        for row in tally.report().totals:
            open_[(tenant, row.currency)] = float(row.total)
            overdue[(tenant, row.currency)] = float(row.total - row.current)
            for field, label in BUCKET_LABELS.items():
                amount: Decimal = getattr(row, field)
                aged[(tenant, row.currency, label)] = float(amount)
    days: dict[tuple[str, ...], float] = {}
    for tenant, figures in dso.items():
        for figure in figures.report().figures:
            if figure.dso is not None:
                days[(tenant, figure.currency)] = float(figure.dso)
    _open.replace(open_)
    _overdue.replace(overdue)
    _aging.replace(aged)
    _dso.replace(days)


#: For ``ServiceSpec.gauges``.
GAUGES = (
    ScrapedGauges("accounts", refresh_accounts, min_interval_s=ACCOUNTS_INTERVAL_S),
    ScrapedGauges("balances", refresh_balances, min_interval_s=BALANCES_INTERVAL_S),
)
