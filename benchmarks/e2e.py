"""End to end: from ``POST /v1/payments`` to the account's new state readable in dunning-svc.

The platform runs as it does in production, four services as OS processes on the
configured backends (the end-to-end suite's harness, ``tests.support.platform``,
which starts each service the way ``make run`` / ``dunning-stack`` does, with a
database and topic prefix of its own, removed afterwards).

The path a payment takes (DESIGN.md, "Shape"; docs/payment-svc.md, docs/dunning-svc.md):

1. payment-svc: ``POST /v1/payments`` allocates the payment to the account's open
   invoices (oldest due first, in its own view of the invoices) and commits the payment
   and its ``PaymentReceived`` (with the allocations) to its outbox in one transaction;
   the response leaves after that commit.
2. payment-svc's outbox relay, woken by the commit (no poll interval on this path),
   publishes the event to the ``payments`` topic (Kafka producer: ``linger_ms=5``,
   ``acks=all``; or the embedded log).
3. dunning-svc's consumer (group ``dunning-svc``) fetches it (``getmany``), folds it into
   the account (the allocation pays the invoice) and commits the new state with its inbox
   row: from then on ``GET /v1/accounts`` shows it.

invoice-svc reads the same event in parallel (its invoices' ``amount_paid``; an
``InvoiceSettled`` only when one is paid in full, which the small payments here never
do): it is not on the path to dunning-svc's state.

What is measured: ``ACCOUNTS`` accounts get one large invoice each, made overdue (the
clock is moved past its due date and every service ticks), so each account has an
``overdue_balance``. Then payments of 1.00 go out round robin over the accounts at a
steady rate (open loop: payment i is due at start + i / rate, whatever the earlier ones
are doing), each lowering its account's ``overdue_balance`` by 1.00. One poller reads
the whole worklist (``GET /v1/accounts?sort=account&limit=1000``, one request for every
account instead of one per payment in flight) back to back, at most every
``POLL_INTERVAL_S``; a payment counts as seen in the first worklist whose balance for
its account is at most what it leaves (per-account order holds on the bus, so the k-th
payment of an account is visible exactly when the balance reaches its value).

Keys: ``e2e_p50_ms`` / ``e2e_p99_ms`` (send of the POST to the arrival of the first
worklist that shows it; so they include up to one poll, ``e2e_poll_ms`` on average),
``e2e_post_p50_ms`` / ``e2e_post_p99_ms`` (the POST alone: step 1),
``e2e_rate_per_s`` (payments per second from the first sent to the last answered:
what the platform took in, against ``e2e_target_per_s``), ``e2e_sent_per_s`` (from the
first sent to the last sent: what the senders kept up with), and
``e2e_post_cpu_ms``: payment-svc's own CPU (``/proc``, its process only) from the senders'
start to the last payment seen, per payment: its requests, its relay and whatever else
it does meanwhile, without the senders' CPU.

The payments go out from ``e2e_senders`` processes of their own (``--e2e-senders``,
``benchmarks.e2e_senders``), each sending its share of the same open-loop schedule, so the
rate the bench can send is not capped by one Python process's HTTP client. With more than
one sender two payments of one account may commit in either order; both pay 1.00, so a
balance still counts the payments of its account that have arrived.
Payments of the first ``WARMUP_S`` seconds are sent but not counted.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx

from benchmarks.e2e_senders import Schedule, cpu_seconds, send_all
from tests.support.platform import TENANT_KEYS, Platform

TENANT = "acme"
#: Few accounts: one worklist poll reads them all, and its cost (and so the resolution
#: of the measurement) grows with their number.
ACCOUNTS = 20
#: Each account's one invoice: far more than the payments of a run take off it.
INVOICE_AMOUNT = Decimal("1000000.00")
PAYMENT_AMOUNT = Decimal("1.00")
WARMUP_S = 3.0
POLL_INTERVAL_S = 0.01
START = datetime(2027, 1, 4, 8, tzinfo=UTC)
DUE = START.date() + timedelta(days=1)
#: Past the due date and every grace: the invoices are overdue (dunning-svc's worklist).
OVERDUE_AT = START + timedelta(days=10)


def account(i: int) -> str:
    return f"E2E-{i % ACCOUNTS:04d}"


@dataclass
class Sent:
    """One payment: when its POST went out and came back, and the balance it leaves."""

    account_id: str
    leaves: Decimal
    sent: float
    answered: float = 0.0
    seen: float = 0.0
    counted: bool = True


@dataclass
class Run:
    """Everything in flight: payments by account in order, and what is not yet seen."""

    waiting: dict[str, list[Sent]] = field(default_factory=dict)
    done: list[Sent] = field(default_factory=list)
    polls: int = 0
    poll_seconds: float = 0.0
    failures: int = 0
    poll_errors: int = 0
    #: Set once every payment is sent: the poller stops when all are seen, or then.
    deadline: float | None = None


def run(rate: float, seconds: float, workdir: Path, senders: int = 1) -> dict[str, float]:
    """Start the platform, seed and age the invoices, send ``rate`` payments a second for
    ``seconds`` (plus the warm-up) from ``senders`` processes; returns the figures."""
    # SIGTERM (a timeout) must stop the four services and drop their database and topics
    # too: as SystemExit, it runs the platform's exit.
    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        with Platform(workdir, start_at=START, env={"DUNNING_LOG_LEVEL": "WARNING"}) as platform:
            _seed(platform)
            return asyncio.run(_measure(platform, rate, seconds, senders))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _seed(platform: Platform) -> None:
    """One overdue invoice of ``INVOICE_AMOUNT`` per account, known to every service."""
    invoices = [
        {
            "invoice_id": f"E2E-INV-{i:04d}",
            "account_id": account(i),
            "account_name": f"E2E account {i}",
            "contact": {"name": "Accounts payable", "email": f"ap{i}@e2e.example"},
            "currency": "EUR",
            "amount_due": str(INVOICE_AMOUNT),
            "issue_date": START.date().isoformat(),
            "due_date": DUE.isoformat(),
        }
        for i in range(ACCOUNTS)
    ]
    response = platform.client(TENANT, "invoice-svc").post(
        "/v1/invoices/batch", json={"invoices": invoices}
    )
    response.raise_for_status()
    assert response.json()["accepted"] == ACCOUNTS, response.text[:500]
    platform.advance(OVERDUE_AT, timeout_s=180)


async def _measure(
    platform: Platform, rate: float, seconds: float, senders: int
) -> dict[str, float]:
    state = Run()
    headers = {"Authorization": f"Bearer {TENANT_KEYS[TENANT]}"}
    async with httpx.AsyncClient(
        base_url=platform.url("dunning-svc"), headers=headers, timeout=60
    ) as dunning:
        balances = await _balances(dunning, state)
        total = int(rate * (WARMUP_S + seconds))
        # Every payment's account and the balance it leaves are known before the first
        # goes out: the poller can mark one seen whichever sender sent it.
        payments = _schedule(state, balances, total)
        pid = platform.procs["payment-svc"].pid
        cpu_before = cpu_seconds(pid)
        schedule = Schedule(
            platform.url("payment-svc"), headers, rate, total, senders, "payment_body"
        )
        poller = asyncio.create_task(_poll(dunning, state))
        began, report = await asyncio.to_thread(send_all, schedule)
        elapsed = time.perf_counter() - began
        # The poller goes on until every payment is seen, or a minute after the last.
        state.deadline = time.perf_counter() + 60
        await poller
        cpu = cpu_seconds(pid) - cpu_before
    for i, sent, answered, status in report:
        payment = payments[i]
        payment.sent, payment.answered = sent, answered
        payment.counted = sent >= began + WARMUP_S
        if status not in (200, 201):
            # Its balance never comes: it shows as missing, and the failures are counted.
            state.failures += 1
    figures = _figures(state, rate, (total, elapsed))
    figures["e2e_senders"] = float(senders)
    last_sent = max((sent for _, sent, _, _ in report), default=began)
    figures["e2e_sent_per_s"] = total / max(1e-9, last_sent - began)
    figures["e2e_post_cpu_ms"] = cpu / max(1, total) * 1000
    return figures


def _schedule(state: Run, balances: dict[str, Decimal], total: int) -> list[Sent]:
    """Payment ``i`` of the run, by ``i``, each waiting in its account's order."""
    payments = []
    for i in range(total):
        account_id = account(i)
        balances[account_id] -= PAYMENT_AMOUNT
        payment = Sent(account_id, balances[account_id], 0.0)
        state.waiting.setdefault(account_id, []).append(payment)
        payments.append(payment)
    return payments


def payment_body(i: int) -> dict[str, str]:
    """The request body of payment ``i`` (round robin over the accounts)."""
    return {
        "payment_id": f"E2E-PAY-{i:07d}",
        "account_id": account(i),
        "currency": "EUR",
        "amount": str(PAYMENT_AMOUNT),
        "received_at": OVERDUE_AT.isoformat(),
        "method": "sepa",
    }


async def _balances(client: httpx.AsyncClient, state: Run) -> dict[str, Decimal]:
    """Every account's overdue balance in EUR, as dunning-svc's worklist shows it now."""
    started = time.perf_counter()
    while True:
        try:
            response = await client.get("/v1/accounts", params={"sort": "account", "limit": 1000})
            break
        except httpx.TransportError as exc:  # a keep-alive connection closed under us
            state.poll_errors += 1
            if state.poll_errors == 1:
                print(f"  e2e: poll failed, retrying: {exc!r}")
    response.raise_for_status()
    state.polls += 1
    state.poll_seconds += time.perf_counter() - started
    found = {}
    for item in response.json()["items"]:
        euros = [m["amount"] for m in item["overdue_balance"] if m["currency"] == "EUR"]
        found[item["account_id"]] = Decimal(euros[0]) if euros else Decimal(0)
    return found


def _polling(state: Run) -> bool:
    if state.deadline is None:
        return True
    return any(state.waiting.values()) and time.perf_counter() < state.deadline


async def _poll(client: httpx.AsyncClient, state: Run) -> None:
    """Read the worklist back to back; mark every payment its balances show as seen."""
    while _polling(state):
        began = time.perf_counter()
        balances = await _balances(client, state)
        arrived = time.perf_counter()
        for account_id, waiting in state.waiting.items():
            balance = balances.get(account_id)
            while waiting and balance is not None and balance <= waiting[0].leaves:
                payment = waiting.pop(0)
                payment.seen = arrived
                state.done.append(payment)
        rest = POLL_INTERVAL_S - (time.perf_counter() - began)
        if rest > 0:
            await asyncio.sleep(rest)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _figures(state: Run, rate: float, sent: tuple[int, float]) -> dict[str, float]:
    counted = [p for p in state.done if p.counted]
    e2e = [(p.seen - p.sent) * 1000 for p in counted]
    post = [(p.answered - p.sent) * 1000 for p in counted]
    total, elapsed = sent
    missing = sum(len(w) for w in state.waiting.values())
    if missing:
        print(f"  e2e: {missing} payments never seen in dunning-svc within 60 s")
    return {
        "e2e_payments": float(len(counted)),
        "e2e_target_per_s": rate,
        "e2e_rate_per_s": total / elapsed,
        "e2e_p50_ms": statistics.median(e2e) if e2e else 0.0,
        "e2e_p99_ms": _percentile(e2e, 0.99),
        "e2e_max_ms": max(e2e, default=0.0),
        "e2e_post_p50_ms": statistics.median(post) if post else 0.0,
        "e2e_post_p99_ms": _percentile(post, 0.99),
        "e2e_poll_ms": state.poll_seconds / max(1, state.polls) * 1000,
        "e2e_failed": float(state.failures),
    }
