"""The seeded load of the fault suite, and the pure core's view of it.

Each simulated day, per tenant, a few writes an ERP and a collector make: invoices,
payments, disputes and their resolutions, promises to pay. They are chosen with a
``random.Random(seed)`` from the accounts as the pure core (``dunning_svc.simulator.
Replay``, which runs ``core.decide``) sees them, and applied to that core as they are
planned: the same seed gives the same writes, and at the end the core says what every
account's stage and balances must be.

So that the platform and the core see the same inputs in the same order, an account
gets at most one write a day, every write of a day is made at 08:00 UTC and settled
before that day's timers run, and nothing reaches the final notice (whose late fee
comes back from invoice-svc as an invoice the core does not model): an invoice 24 days
past due is paid, or its dispute upheld.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from dunning_events.money import from_minor
from dunning_svc.core import Account, InvoiceState
from dunning_svc.policy import Policy, load_yaml
from dunning_svc.simulator import Replay
from tests.support.platform import ROOT

#: The policy every tenant runs on (dunning-svc's default).
POLICY_FILE = ROOT / "services/dunning-svc/src/dunning_svc/policies/standard.yaml"
ACCOUNTS = tuple(f"a{n:02d}" for n in range(1, 11))
#: An invoice this many days past due is closed (paid or credited) by the load.
CLOSE_AT_DAYS = 24


def standard_policy() -> Policy:
    """The default escalation policy, as dunning-svc loads it."""
    return load_yaml(POLICY_FILE.read_text())


@dataclass
class Write:
    """One write through a public API, and what came of it."""

    tenant: str
    kind: str  # invoice, payment, dispute, resolve, promise
    service: str
    path: str
    body: dict[str, Any]
    key: str  # the Idempotency-Key, the same on every retry
    account_id: str
    ref: str  # the invoice or payment id it creates or concerns
    day: int
    status: int = 0
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


def address(tenant: str, account_id: str) -> str:
    """The contact address of an account: one per tenant and account."""
    return f"ap@{tenant}-{account_id}.example"


def _amount(minor: int) -> str:
    return str(from_minor(minor, "EUR"))


class Load:
    """The writes of each day for each tenant, and the core that has applied them."""

    def __init__(self, seed: int, tenants: tuple[str, ...], start: date) -> None:
        self.rng = random.Random(seed)
        self.tenants = tenants
        self.start = start
        policy = standard_policy()
        self.cores = {tenant: Replay(policy) for tenant in tenants}
        self._seq = 0
        # invoices ever disputed, and the day each open dispute began
        self._disputed: dict[tuple[str, str], int] = {}
        self._ever_disputed: set[tuple[str, str]] = set()

    def day(self, index: int) -> date:
        """The date of day ``index`` of the load."""
        return self.start + timedelta(days=index)

    @staticmethod
    def morning(day: date) -> datetime:
        """08:00 UTC of ``day``: when its writes are made."""
        return datetime.combine(day, time(8), UTC)

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def plan(self, index: int, *, issue: bool = True) -> list[Write]:
        """Day ``index``'s writes for every tenant, applied to the core as planned."""
        writes: list[Write] = []
        for tenant in self.tenants:
            writes += self._plan_tenant(tenant, index, issue=issue)
        return writes

    def close_day(self, index: int) -> None:
        """Run the core's timers of day ``index`` (the platform ticks at 09:00 of it)."""
        for core in self.cores.values():
            core.close_day(self.day(index))

    def _open(self, account: Account) -> list[InvoiceState]:
        return [i for i in account.open_invoices() if account.balance(i) > 0]

    def _plan_tenant(self, tenant: str, index: int, *, issue: bool) -> list[Write]:
        core = self.cores[tenant]
        today = self.day(index)
        busy: set[str] = set()  # one write per account a day: the order is then the core's
        writes: list[Write] = []

        def apply(row: dict[str, str], write: Write) -> None:
            core.apply({"date": today.isoformat(), **row}, self._next())
            busy.add(write.account_id)
            writes.append(write)

        # Close what is about to reach the final notice: uphold its dispute or pay it.
        for account_id in ACCOUNTS:
            account = core.account(account_id)
            for invoice in self._open(account):
                if account_id in busy or invoice.due_date is None:
                    continue
                if (today - invoice.due_date).days < CLOSE_AT_DAYS:
                    continue
                key = (tenant, invoice.invoice_id)
                if key in self._disputed:
                    apply(*self._resolve(tenant, index, account_id, invoice, "upheld"))
                else:
                    apply(*self._payment(tenant, index, account, invoice, full=True))
        # Resolve disputes open for four days or more.
        for (owner, invoice_id), since in sorted(self._disputed.items()):
            account_id = invoice_id.split(".")[1]
            if owner != tenant or account_id in busy or index - since < 4:
                continue
            resolution = self.rng.choice(["upheld", "rejected"])
            invoice = core.account(account_id).invoices[invoice_id]
            apply(*self._resolve(tenant, index, account_id, invoice, resolution))
        free = [a for a in ACCOUNTS if a not in busy]
        self.rng.shuffle(free)
        for account_id in free:
            account = core.account(account_id)
            roll = self.rng.random()
            payable = [
                i
                for i in self._open(account)
                if i.issue_date is not None
                and i.issue_date < today
                and (tenant, i.invoice_id) not in self._disputed
            ]
            overdue = [i for i in payable if i.due_date is not None and i.due_date < today]
            if roll < 0.25 and issue:
                apply(*self._invoice(tenant, index, account_id))
            elif roll < 0.36 and overdue:
                invoice = self.rng.choice(overdue)
                full = self.rng.random() < 0.6
                apply(*self._payment(tenant, index, account, invoice, full=full))
            elif roll < 0.41 and overdue:
                invoice = self.rng.choice(overdue)
                if (tenant, invoice.invoice_id) not in self._ever_disputed:
                    apply(*self._dispute(tenant, index, account, invoice))
            elif roll < 0.47 and overdue:
                # The core may refuse it (a promise is open): so would the API; then skipped.
                with contextlib.suppress(ValueError):
                    apply(*self._promise(tenant, index, account))
        return writes

    def _invoice(self, tenant: str, index: int, account_id: str) -> tuple[dict[str, str], Write]:
        today = self.day(index)
        invoice_id = f"inv.{account_id}.{index:02d}"
        amount = _amount(self.rng.randrange(100_00, 2_500_00))
        due = today + timedelta(days=self.rng.randrange(3, 11))
        body = {
            "invoice_id": invoice_id,
            "account_id": account_id,
            "account_name": f"Account {account_id}",
            "contact": {"name": "Accounts Payable", "email": address(tenant, account_id)},
            "currency": "EUR",
            "amount_due": amount,
            "issue_date": today.isoformat(),
            "due_date": due.isoformat(),
        }
        row = {
            "kind": "invoice",
            "account_id": account_id,
            "invoice_id": invoice_id,
            "amount": amount,
            "currency": "EUR",
            "due_date": due.isoformat(),
        }
        write = Write(
            tenant, "invoice", "invoice-svc", "/v1/invoices", body, f"{tenant}-{invoice_id}",
            account_id, invoice_id, index,
        )  # fmt: skip
        return row, write

    def _payment(
        self, tenant: str, index: int, account: Account, invoice: InvoiceState, *, full: bool
    ) -> tuple[dict[str, str], Write]:
        balance = account.balance(invoice)
        minor = balance if full or balance < 2_00 else balance // 2
        amount = _amount(minor)
        payment_id = f"pay.{account.account_id}.{index:02d}"
        body = {
            "payment_id": payment_id,
            "account_id": account.account_id,
            "currency": "EUR",
            "amount": amount,
            "received_at": self.morning(self.day(index)).isoformat(),
            "method": "sepa",
            "allocations": [{"invoice_id": invoice.invoice_id, "amount": amount}],
        }
        row = {
            "kind": "payment",
            "account_id": account.account_id,
            "invoice_id": invoice.invoice_id,
            "amount": amount,
            "currency": "EUR",
        }
        write = Write(
            tenant, "payment", "payment-svc", "/v1/payments", body, f"{tenant}-{payment_id}",
            account.account_id, payment_id, index,
        )  # fmt: skip
        return row, write

    def _dispute(
        self, tenant: str, index: int, account: Account, invoice: InvoiceState
    ) -> tuple[dict[str, str], Write]:
        amount = _amount(account.balance(invoice))
        self._disputed[(tenant, invoice.invoice_id)] = index
        self._ever_disputed.add((tenant, invoice.invoice_id))
        body = {"reason": "goods arrived damaged", "amount": amount}
        row = {
            "kind": "dispute",
            "account_id": account.account_id,
            "invoice_id": invoice.invoice_id,
            "amount": amount,
            "currency": "EUR",
        }
        write = Write(
            tenant, "dispute", "invoice-svc", f"/v1/invoices/{invoice.invoice_id}/dispute",
            body, f"{tenant}-dispute-{invoice.invoice_id}", account.account_id,
            invoice.invoice_id, index,
        )  # fmt: skip
        return row, write

    def _resolve(
        self, tenant: str, index: int, account_id: str, invoice: InvoiceState, resolution: str
    ) -> tuple[dict[str, str], Write]:
        del self._disputed[(tenant, invoice.invoice_id)]
        row = {
            "kind": "resolve",
            "account_id": account_id,
            "invoice_id": invoice.invoice_id,
            "detail": resolution,
        }
        write = Write(
            tenant, "resolve", "invoice-svc",
            f"/v1/invoices/{invoice.invoice_id}/dispute/resolve", {"resolution": resolution},
            f"{tenant}-resolve-{invoice.invoice_id}", account_id, invoice.invoice_id, index,
        )  # fmt: skip
        return row, write

    def _promise(self, tenant: str, index: int, account: Account) -> tuple[dict[str, str], Write]:
        today = self.day(index)
        owed = sum(account.balance(i) for i in account.overdue_invoices(today))
        amount = _amount(max(1_00, owed))
        promised = today + timedelta(days=self.rng.randrange(2, 7))
        promise_id = f"ptp.{account.account_id}.{index:02d}"
        body = {
            "promise_id": promise_id,
            "amount": amount,
            "currency": "EUR",
            "promised_date": promised.isoformat(),
        }
        row = {
            "kind": "promise",
            "account_id": account.account_id,
            "amount": amount,
            "currency": "EUR",
            "due_date": promised.isoformat(),
        }
        write = Write(
            tenant, "promise", "dunning-svc",
            f"/v1/accounts/{account.account_id}/promise-to-pay", body,
            f"{tenant}-{promise_id}", account.account_id, promise_id, index,
        )  # fmt: skip
        return row, write
