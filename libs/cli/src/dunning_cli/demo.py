"""``dunning demo``: eight accounts, sixty days of dunning, in under a minute.

The ledger goes into the demo tenant (``demo`` under ``dunning up``) with account ids
unique to the run, so a second demo on the same stack starts afresh. Invoices are
dated from the platform's own clock (the manual clock cannot go back): first the clock
moves to the next weekday at 10:00 UTC, so each daily step lands in business hours;
every invoice falls due three days later (day 3). Then the clock moves a day at a time
(the same steps as ``dunning clock advance``) and each account acts on its day.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from dunning_cli import clock
from dunning_cli.platform import DEV_TENANT, Platform, call
from dunning_cli.terminal import progress_bar
from dunning_runtime.settings import ServiceSettings

DUE_DAY = 3  # every invoice of the ledger falls due on day 3 of the demo
OPENING_HOUR = 10  # UTC: within business hours in Berlin and London all year


@dataclass
class Account:
    """One account of the demo ledger and what it does on which day."""

    key: str  # what the account shows (e.g. "never-pays")
    name: str
    story: str
    invoices: list[tuple[str, str]]  # (invoice number suffix, amount)
    currency: str = "EUR"
    segment: str = "standard"
    locale: str = "en-GB"
    timezone: str = "Europe/London"
    phone: str | None = None
    actions: dict[int, list[Callable[[Demo, Account], Any]]] = field(default_factory=dict)
    account_id: str = ""

    def invoice_id(self, suffix: str) -> str:
        """The invoice number of the run."""
        return f"{self.account_id}-{suffix}"

    def total(self) -> Decimal:
        """What the account owes at the start."""
        return sum((Decimal(amount) for _, amount in self.invoices), Decimal(0))


def pays(amount: str | None = None, invoice: str | None = None) -> Callable[[Demo, Account], Any]:
    """The account pays ``amount`` (default: all it owes at the start), or one invoice."""

    async def act(demo: Demo, account: Account) -> None:
        await demo.pay(account, amount, invoice)

    return act


def disputes(invoice: str, reason: str) -> Callable[[Demo, Account], Any]:
    """The account disputes one invoice."""

    async def act(demo: Demo, account: Account) -> None:
        path = f"/v1/invoices/{account.invoice_id(invoice)}/dispute"
        await demo.post("invoice-svc", path, {"reason": reason})

    return act


def dispute_rejected(invoice: str) -> Callable[[Demo, Account], Any]:
    """The seller rejects the account's dispute of one invoice."""

    async def act(demo: Demo, account: Account) -> None:
        path = f"/v1/invoices/{account.invoice_id(invoice)}/dispute/resolve"
        body = {"resolution": "rejected", "note": "delivery note signed without remarks"}
        await demo.post("invoice-svc", path, body)

    return act


def promises(on_day: int) -> Callable[[Demo, Account], Any]:
    """The account promises to pay everything on day ``on_day``."""

    async def act(demo: Demo, account: Account) -> None:
        body = {
            "amount": str(account.total()),
            "currency": account.currency,
            "promised_date": demo.day(on_day).isoformat(),
        }
        await demo.post("dunning-svc", f"/v1/accounts/{account.account_id}/promise-to-pay", body)

    return act


def agrees_plan(days: list[int]) -> Callable[[Demo, Account], Any]:
    """The account agrees to pay in equal installments on ``days``."""

    async def act(demo: Demo, account: Account) -> None:
        share = (account.total() / len(days)).quantize(Decimal("0.01"))
        installments = [{"due_date": demo.day(d).isoformat(), "amount": str(share)} for d in days]
        body = {"currency": account.currency, "installments": installments}
        await demo.post("dunning-svc", f"/v1/accounts/{account.account_id}/payment-plan", body)

    return act


def ledger() -> list[Account]:
    """The eight accounts and their stories (due date: day 3)."""
    return [
        Account(
            "on-time", "Nordwind Logistik GmbH", "pays before the due date",
            [("1", "1180.00")], locale="de-DE", timezone="Europe/Berlin",
            actions={2: [pays()]},
        ),
        Account(
            "late-partial", "Harbour Freight Ltd", "pays late, in two parts",
            [("1", "900.00"), ("2", "600.00")], currency="GBP",
            actions={9: [pays("500.00")], 20: [pays("1000.00")]},
        ),
        Account(
            "dispute", "Alpenblick Hotels AG", "disputes, is rejected, pays",
            [("1", "2400.00"), ("2", "350.00")], locale="de-DE", timezone="Europe/Berlin",
            actions={
                2: [disputes("1", "Lieferung unvollständig")],
                3: [pays("350.00", invoice="2")],
                14: [dispute_rejected("1")],
                30: [pays("2400.00", invoice="1")],
            },
        ),
        Account(
            "promise-kept", "Brightline Retail plc", "promises, pays in time",
            [("1", "1500.00")], actions={6: [promises(12)], 11: [pays()]},
        ),
        Account(
            "promise-broken", "Kestrel Engineering Ltd", "promises, never pays",
            [("1", "2000.00")], phone="+447700900123", actions={6: [promises(12)]},
        ),
        Account(
            "plan-missed", "Rheinland Bau KG", "plan: pays 2 of 3 installments",
            [("1", "3000.00")], locale="de-DE", timezone="Europe/Berlin",
            actions={
                6: [agrees_plan([10, 24, 38])],
                9: [pays("1000.00")],
                23: [pays("1000.00")],
            },
        ),
        Account(
            "strategic", "Orion Airlines SA", "strategic, never pays",
            [("1", "5000.00")], segment="strategic", locale="fr-FR", timezone="Europe/Paris",
        ),
        Account(
            "never-pays", "Greyfield Supplies Ltd", "never pays",
            [("1", "1250.00"), ("2", "430.00")], phone="+447700900456",
        ),
    ]  # fmt: skip


class Demo:
    """The running demo: platform, tenant key and the clock's day 0."""

    def __init__(
        self, platform: Platform, client: httpx.AsyncClient, key: str, start: datetime
    ) -> None:
        self.platform, self.client, self.key, self.start = platform, client, key, start
        self.payments = 0

    def day(self, number: int) -> date:
        """The calendar date of day ``number`` (UTC)."""
        return (self.start + timedelta(days=number)).date()

    def instant(self, number: int) -> datetime:
        """10:00 UTC on day ``number``."""
        return self.start + timedelta(days=number)

    async def post(
        self, service: str, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> Any:
        """POST ``body`` to ``service`` as the demo tenant."""
        target = self.platform.service(service)
        return await call(
            self.client, target, "POST", path, key=self.key, json=body, headers=headers
        )

    async def get(self, service: str, path: str, params: dict[str, str] | None = None) -> Any:
        """GET ``path`` of ``service`` as the demo tenant."""
        target = self.platform.service(service)
        return await call(self.client, target, "GET", path, key=self.key, params=params)

    async def issue(self, account: Account, traceparent: str | None) -> None:
        """Post the account's invoices, issued 27 days before day 0, due on day 3."""
        for suffix, amount in account.invoices:
            body = {
                "invoice_id": account.invoice_id(suffix),
                "account_id": account.account_id,
                "account_name": account.name,
                "contact": {
                    "name": "Accounts Payable",
                    "email": f"ap@{account.key}.example",
                    **({"phone": account.phone} if account.phone else {}),
                },
                "currency": account.currency,
                "amount_due": amount,
                "issue_date": self.day(DUE_DAY - 30).isoformat(),
                "due_date": self.day(DUE_DAY).isoformat(),
                "segment": account.segment,
                "timezone": account.timezone,
                "locale": account.locale,
                "terms": {"net_days": 30},
            }
            headers = {"traceparent": traceparent} if traceparent else None
            traceparent = None  # only the first invoice carries the demo's own trace
            await self.post("invoice-svc", "/v1/invoices", body, headers)

    async def pay(self, account: Account, amount: str | None, invoice: str | None) -> None:
        """A bank transfer from the account, received at 10:00 UTC today."""
        self.payments += 1
        body: dict[str, Any] = {
            "payment_id": f"{account.account_id}-PAY-{self.payments}",
            "account_id": account.account_id,
            "currency": account.currency,
            "amount": amount or str(account.total()),
            "received_at": (await clock.now(self.platform, self.client)).isoformat(),
            "method": "sepa" if account.currency == "EUR" else "wire",
        }
        if invoice:
            body["allocations"] = [{"invoice_id": account.invoice_id(invoice), "amount": amount}]
        await self.post("payment-svc", "/v1/payments", body)


@dataclass(frozen=True)
class Outcome:
    """Where an account stands at the end of the demo."""

    account: Account
    stage: str
    notices: Counter[str]  # sent notices by channel
    suppressed: int
    fees: Decimal
    handoff: str | None
    open_balance: str


async def outcome(demo: Demo, account: Account) -> Outcome:
    """Read the account's state from dunning-svc, notify-svc and invoice-svc."""
    state = await demo.get("dunning-svc", f"/v1/accounts/{account.account_id}")
    notices: Counter[str] = Counter()
    suppressed = 0
    query = {"account_id": account.account_id, "limit": "1000"}
    for notice in (await demo.get("notify-svc", "/v1/notifications", query))["items"]:
        if notice["status"] == "sent":
            notices[notice["channel"]] += 1
        elif notice["status"] == "suppressed":
            suppressed += 1
    invoices = await demo.get("invoice-svc", "/v1/invoices", {"account_id": account.account_id})
    fees = sum(
        (Decimal(i["amount_due"]) for i in invoices["items"] if i["metadata"].get("kind") == "fee"),
        Decimal(0),
    )
    balance = ", ".join(f"{m['amount']} {m['currency']}" for m in state["open_balance"]) or "0"
    return Outcome(account, state["stage"], notices, suppressed, fees, state["handoff"], balance)


def summary_table(outcomes: list[Outcome]) -> Table:
    """One row per account: its story and where it ended."""
    table = Table(title="after 60 days")
    for column in ("account", "story", "stage", "notices sent", "fees", "handoff", "open"):
        # Only the story may wrap: ids and amounts are read, and copied, whole.
        table.add_column(column, no_wrap=column != "story")
    for o in outcomes:
        sent = ", ".join(f"{channel} {n}" for channel, n in sorted(o.notices.items())) or "-"
        if o.suppressed:
            sent += f" ({o.suppressed} suppressed)"
        fees = f"{o.fees} {o.account.currency}" if o.fees else "-"
        table.add_row(
            o.account.account_id, o.account.story, o.stage, sent, fees, o.handoff or "-",
            o.open_balance,
        )  # fmt: skip
    return table


def _tenant(platform: Platform, tenant: str | None) -> str:
    if tenant:
        return tenant
    return DEV_TENANT if DEV_TENANT in platform.tenant_keys else next(iter(platform.tenant_keys))


def _next_opening(instant: datetime) -> datetime:
    """The next weekday at OPENING_HOUR UTC after ``instant``."""
    day = instant.astimezone(UTC).replace(hour=OPENING_HOUR, minute=0, second=0, microsecond=0)
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


async def run_demo(
    platform: Platform,
    settings: ServiceSettings,
    console: Console,
    *,
    tenant: str | None = None,
    days: int = 60,
) -> list[Outcome]:
    """Post the ledger, move the clock ``days`` days, print the summary; the outcomes."""
    began = time.monotonic()
    tenant = _tenant(platform, tenant)
    key = platform.key_of(tenant)
    run = secrets.token_hex(3).upper()
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    accounts = ledger()
    for account in accounts:
        account.account_id = f"{account.key.upper()}-{run}"
    async with platform.client() as client:
        start = _next_opening(await clock.now(platform, client))
        demo = Demo(platform, client, key, start)
        await clock.step(platform, client, start)
        console.print(
            f"demo run {run} in tenant [bold]{tenant}[/bold]: 8 accounts, "
            f"invoices due {demo.day(DUE_DAY)}, clock from {start:%Y-%m-%d %H:%M} UTC"
        )
        traceparent: str | None = f"00-{trace_id}-{span_id}-01"
        for account in accounts:
            await demo.issue(account, traceparent)
            traceparent = None
        with progress_bar() as bar:
            task = bar.add_task("day 0", total=days)
            for number in range(days):
                for account in accounts:
                    for act in account.actions.get(number, []):
                        await act(demo, account)
                await clock.step(platform, client, demo.instant(number + 1))
                bar.update(task, advance=1, description=f"day {number + 1} {demo.day(number + 1)}")
        outcomes = [await outcome(demo, account) for account in accounts]
    console.print(summary_table(outcomes))
    _where_to_look(console, platform, settings, tenant, accounts, trace_id)
    console.print(f"done in {time.monotonic() - began:.0f} s")
    return outcomes


def _where_to_look(
    console: Console,
    platform: Platform,
    settings: ServiceSettings,
    tenant: str,
    accounts: list[Account],
    trace_id: str,
) -> None:
    smtp = os.environ.get("DUNNING_SMTP_URL")
    if smtp:
        mail = f"at the SMTP server {smtp.split('@')[-1]}"
    else:
        mail = f"as .eml files in {Path(settings.data_dir).resolve() / 'outbox' / 'email' / tenant}"
    dunning = platform.service("dunning-svc").url
    notify = platform.service("notify-svc").url
    last = accounts[-1].account_id
    console.print(f"mail: {mail} (where `dunning up` runs)")
    console.print(f"timeline: {dunning}/v1/accounts/{last}/timeline")
    console.print(f"notices:  {notify}/v1/notifications?account_id={last}")
    console.print(f"trace of the first invoice: {trace_id}")
