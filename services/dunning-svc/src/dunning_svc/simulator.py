"""``dunning simulate``: replay a ledger through a policy with the service's own core.

No service, database or broker: the CSV ledger becomes the events invoice-svc and
payment-svc would publish, each account runs through ``core.decide`` day by day
(its timers fired at the instants they ask for), and every command is printed with
the reason the core gave, followed by a summary.

Ledger CSV (header row required; blank fields may be left empty)::

    date,kind,account_id,invoice_id,amount,currency,due_date,segment,timezone,detail

``kind`` is one of:

* ``invoice``: issued on ``date`` for ``amount`` ``currency``, due ``due_date``
  (``segment`` and ``timezone`` optional; ``detail`` may give a late fee as
  ``flat:40.00`` or ``percent:1.5`` or ``percent:1.5:cap:100.00``);
* ``payment``: ``amount`` received on ``date``, for ``invoice_id`` or, when it is blank,
  for the account's open invoices in that currency, oldest due date first;
* ``dispute``: ``amount`` of ``invoice_id`` disputed; ``resolve``: the dispute ends,
  ``detail`` ``upheld`` (the disputed amount is credited) or ``rejected``;
* ``void``: ``invoice_id`` is cancelled;
* ``promise``: a promise to pay ``amount`` by ``due_date``; ``pause``: paused until
  ``due_date`` (or a resume); ``resume``.

Ledger rows of a day apply at 08:00 UTC, before that day's timers.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from dunning_events import (
    Allocation,
    CollectionsHandoffRequested,
    CreditHoldRequested,
    Event,
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceVoided,
    LateFeeAssessed,
    Money,
    NotificationRequested,
    PaymentReceived,
)
from dunning_events.money import from_minor, to_minor
from dunning_svc.core import Account, Input, Pause, RecordPromise, Resume, Tick, decide
from dunning_svc.policy import Policy, load_yaml

TENANT = "simulation"
_AT = time(8)
COLUMNS = (
    "date",
    "kind",
    "account_id",
    "invoice_id",
    "amount",
    "currency",
    "due_date",
    "segment",
    "timezone",
    "detail",
)


class LedgerError(ValueError):
    """A ledger row that cannot be read, with its line number."""


@dataclass(frozen=True)
class Line:
    """One thing that happened to an account, as the simulator prints it."""

    day: date
    at: datetime
    account_id: str
    stage: str
    action: str
    why: str


def _money(amount: Decimal, currency: str) -> Money:
    return Money(amount=amount, currency=currency)


def read_ledger(text: str) -> list[tuple[int, dict[str, str]]]:
    """The rows of a ledger CSV with their line numbers, in date order (stable)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"date", "kind", "account_id"} - set(reader.fieldnames or [])
    if missing:
        raise LedgerError(f"line 1: the header lacks {', '.join(sorted(missing))}")
    rows = [
        (n, {k: (v or "").strip() for k, v in row.items() if k})
        for n, row in enumerate(reader, start=2)
    ]
    for number, row in rows:
        try:
            date.fromisoformat(row["date"])
        except ValueError:
            raise LedgerError(f"line {number}: date {row['date']!r} is not YYYY-MM-DD") from None
    return sorted(rows, key=lambda r: r[1]["date"])


def _late_fee(detail: str) -> dict[str, Any] | None:
    if not detail:
        return None
    parts = detail.split(":")
    if parts[0] == "flat" and len(parts) == 2:
        return {"kind": "flat", "amount": parts[1]}
    if parts[0] == "percent" and len(parts) in (2, 4):
        fee: dict[str, Any] = {"kind": "percent_per_month", "percent": parts[1]}
        if len(parts) == 4 and parts[2] == "cap":
            fee["cap"] = parts[3]
        return fee
    raise ValueError(f"late fee {detail!r} is not flat:AMOUNT or percent:P[:cap:AMOUNT]")


@dataclass(frozen=True)
class _Row:
    """A ledger row as the inputs read it: its fields, when it applies and its number."""

    fields: dict[str, str]
    when: datetime
    seq: int
    #: Parsed before the kind is looked at, as a row's amount always was.
    given: Decimal | None

    @property
    def account_id(self) -> str:
        return self.fields["account_id"]

    @property
    def invoice_id(self) -> str:
        return self.fields.get("invoice_id", "")

    @property
    def currency(self) -> str:
        return self.fields.get("currency") or "EUR"

    def amount(self, what: str) -> Decimal:
        assert self.given is not None, f"{what} needs an amount"
        return self.given


def _invoice(account: Account, row: _Row) -> list[Input]:
    amount = row.amount("an invoice")
    return [
        InvoiceIssued.model_validate(
            {
                "account_id": row.account_id,
                "invoice_id": row.invoice_id,
                "account_name": row.account_id,
                "contact": {
                    "name": f"Accounts payable of {row.account_id}",
                    "email": "ap@example.com",
                },
                "amount_due": _money(amount, row.currency),
                "issue_date": row.when.date(),
                "due_date": date.fromisoformat(row.fields["due_date"]),
                "segment": row.fields.get("segment") or "standard",
                "timezone": row.fields.get("timezone") or "UTC",
                "terms": {"late_fee": _late_fee(row.fields.get("detail", ""))},
            }
        )
    ]


def _payment(account: Account, row: _Row) -> list[Input]:
    amount, currency, invoice_id = row.amount("a payment"), row.currency, row.invoice_id
    left = to_minor(amount, currency)
    allocations = []
    targets = (
        [account.invoices[invoice_id]]
        if invoice_id in account.invoices
        else [i for i in account.open_invoices() if i.currency == currency]
    )
    for invoice in targets:
        share = min(left, account.balance(invoice))
        if share > 0:
            allocations.append(
                Allocation(
                    invoice_id=invoice.invoice_id,
                    amount=_money(from_minor(share, currency), currency),
                )
            )
            left -= share
    return [
        PaymentReceived(
            account_id=row.account_id,
            payment_id=f"SIM-PAY-{row.seq}",
            amount=_money(amount, currency),
            received_at=row.when,
            method="bank_transfer",
            allocations=allocations,
            unapplied=_money(from_minor(left, currency), currency),
        )
    ]


def _dispute(account: Account, row: _Row) -> list[Input]:
    return [
        InvoiceDisputed(
            account_id=row.account_id,
            invoice_id=row.invoice_id,
            reason="simulated dispute",
            disputed_amount=_money(row.amount("a dispute"), row.currency),
        )
    ]


def _resolve(account: Account, row: _Row) -> list[Input]:
    found = account.invoices.get(row.invoice_id)
    cur = found.currency if found and found.currency else row.currency
    disputed = from_minor(found.disputed, cur) if found else Decimal(0)
    upheld = row.fields.get("detail") == "upheld"
    balance = from_minor(account.balance(found), cur) if found else Decimal(0)
    return [
        InvoiceDisputeResolved(
            account_id=row.account_id,
            invoice_id=row.invoice_id,
            resolution="upheld" if upheld else "rejected",
            credited_amount=_money(disputed, cur) if upheld else None,
            balance=_money(max(Decimal(0), balance - disputed) if upheld else balance, cur),
        )
    ]


def _void(account: Account, row: _Row) -> list[Input]:
    voided = account.invoices.get(row.invoice_id)
    cur = voided.currency if voided and voided.currency else row.currency
    balance = from_minor(account.balance(voided), cur) if voided else Decimal(0)
    return [
        InvoiceVoided(
            account_id=row.account_id,
            invoice_id=row.invoice_id,
            balance_voided=_money(balance, cur),
        )
    ]


def _promise(account: Account, row: _Row) -> list[Input]:
    amount = row.amount("a promise")
    return [
        RecordPromise(
            f"SIM-PTP-{row.seq}",
            row.currency,
            to_minor(amount, row.currency),
            date.fromisoformat(row.fields["due_date"]),
            "simulation",
        )
    ]


def _pause(account: Account, row: _Row) -> list[Input]:
    due = row.fields.get("due_date")
    until = date.fromisoformat(due) if due else None
    return [Pause(row.fields.get("detail") or "simulated pause", until, "simulation")]


def _resume(account: Account, row: _Row) -> list[Input]:
    return [Resume("simulation")]


#: What each ``kind`` of ledger row stands for.
_KINDS: dict[str, Callable[[Account, _Row], list[Input]]] = {
    "invoice": _invoice,
    "payment": _payment,
    "dispute": _dispute,
    "resolve": _resolve,
    "void": _void,
    "promise": _promise,
    "pause": _pause,
    "resume": _resume,
}


def _inputs(account: Account, row: dict[str, str], when: datetime, seq: int) -> list[Input]:
    """The events (or manual actions) a ledger row stands for."""
    kind = row["kind"]
    given = Decimal(row["amount"]) if row.get("amount") else None
    make = _KINDS.get(kind)
    if make is None:
        raise ValueError(
            f"kind {kind!r} is not one of invoice, payment, dispute, resolve, void, "
            "promise, pause, resume"
        )
    return make(account, _Row(row, when, seq, given))


def describe(command: Event) -> str:
    """A command in a few words."""
    if isinstance(command, NotificationRequested):
        extra = f", fee {command.fee.amount} {command.fee.currency}" if command.fee else ""
        return f"{command.channel} {command.template}{extra}"
    if isinstance(command, LateFeeAssessed):
        return f"late fee {command.amount.amount} {command.amount.currency}"
    if isinstance(command, CollectionsHandoffRequested):
        owed = ", ".join(f"{m.amount} {m.currency}" for m in command.overdue_balance)
        return f"handoff to collections ({owed})"
    if isinstance(command, CreditHoldRequested):
        return "credit hold"
    return command.event_type


class Replay:
    """Accounts run through ``decide`` row by row and day by day, as ``simulate`` does.

    ``apply`` takes one ledger row (applied at 08:00 UTC of its date); ``close_day``
    fires every timer due before the next midnight. The fault suite (tests/faults) uses
    it as the oracle of the running platform; ``simulate`` prints what it did.
    """

    def __init__(self, policy: Policy, policies: dict[str, Policy] | None = None) -> None:
        self.policy = policy
        self.policies = policies or {}
        self.accounts: dict[str, Account] = {}
        self.lines: list[Line] = []

    def _policy_of(self, account: Account) -> Policy:
        return self.policies.get(account.segment, self.policy)

    def _run(self, account: Account, input: Input, when: datetime) -> Account:
        account, commands, reasons = decide(account, input, self._policy_of(account), when)
        why = "; ".join(reasons)
        for command in commands:
            if command.event_type == "DunningStageChanged":
                continue
            self.lines.append(
                Line(when.date(), when, account.account_id, account.stage, describe(command), why)
            )
        return account

    def account(self, account_id: str) -> Account:
        """The account as it stands (a new, empty one if nothing happened to it yet)."""
        return self.accounts.get(account_id) or Account(TENANT, account_id)

    def apply(self, row: dict[str, str], seq: int) -> None:
        """Apply one ledger row at 08:00 UTC of its date; ``seq`` numbers made-up ids.
        Raises ``ValueError`` (a ``DunningRuleError`` too) when the row cannot apply; the
        account is then left as it was."""
        account = self.account(row["account_id"])
        when = datetime.combine(date.fromisoformat(row["date"]), _AT, UTC)
        for input in _inputs(account, row, when, seq):
            account = self._run(account, input, when)
        self.accounts[row["account_id"]] = account

    def close_day(self, day: date) -> None:
        """Fire every account's timers due before the midnight that ends ``day``."""
        close = datetime.combine(day + timedelta(days=1), time(), UTC)
        for account_id in sorted(self.accounts):
            account = self.accounts[account_id]
            while account.next_action_at is not None and account.next_action_at < close:
                account = self._run(account, Tick(), account.next_action_at)
            self.accounts[account_id] = account


def simulate(
    policy: Policy,
    ledger: str,
    start: date | None = None,
    end: date | None = None,
    policies: dict[str, Policy] | None = None,
) -> tuple[list[Line], dict[str, Any]]:
    """Run the ledger through ``policy`` (or, per segment, ``policies``) from ``start`` to
    ``end`` (default: the first ledger date to 60 days after the last); the lines of what
    happened and a summary."""
    rows = read_ledger(ledger)
    if not rows:
        return [], {"notices_by_stage": {}, "handoffs": 0, "fees": {}, "accounts": 0}
    first = date.fromisoformat(rows[0][1]["date"])
    last = date.fromisoformat(rows[-1][1]["date"])
    start = start or first
    end = end or last + timedelta(days=60)
    replay = Replay(policy, policies)
    by_day: dict[date, list[tuple[int, dict[str, str]]]] = {}
    for number, row in rows:
        by_day.setdefault(date.fromisoformat(row["date"]), []).append((number, row))
    day = min(start, first)
    while day <= end:
        for number, row in by_day.get(day, []):
            try:
                replay.apply(row, number)
            except (ValueError, AssertionError) as exc:
                raise LedgerError(f"line {number}: {exc}") from None
        # Every day runs from the first ledger day on; --from only chooses what is shown.
        replay.close_day(day)
        day += timedelta(days=1)
    shown = sorted(
        (line for line in replay.lines if start <= line.day <= end),
        key=lambda line: (line.at, line.account_id),
    )
    summary = _summary(shown, replay.accounts, start, end)
    return shown, summary


def _summary(
    shown: Sequence[Line], accounts: dict[str, Account], start: date, end: date
) -> dict[str, Any]:
    """Notices per stage, handoffs and fees among the lines shown; the accounts' stages."""
    notices: Counter[str] = Counter()
    fees: dict[str, Decimal] = {}
    handoffs = 0
    for line in shown:
        if line.action.startswith(("email", "sms", "task", "webhook")):
            notices[line.stage] += 1
        elif line.action.startswith("late fee"):
            _, _, amount, currency = line.action.split()
            fees[currency] = fees.get(currency, Decimal(0)) + Decimal(amount)
        elif line.action.startswith("handoff"):
            handoffs += 1
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "accounts": len(accounts),
        "notices_by_stage": dict(sorted(notices.items())),
        "handoffs": handoffs,
        "fees": {c: str(a) for c, a in sorted(fees.items())},
        "final_stages": dict(sorted(Counter(a.stage for a in accounts.values()).items())),
    }


def render(lines: Sequence[Line], summary: dict[str, Any], fmt: str, out: TextIO) -> None:
    """Print ``lines`` and ``summary`` as a table, CSV or JSON."""
    records = [
        {
            "date": line.day.isoformat(),
            "time": line.at.strftime("%H:%M"),
            "account_id": line.account_id,
            "stage": line.stage,
            "action": line.action,
            "why": line.why,
        }
        for line in lines
    ]
    if fmt == "json":
        json.dump({"lines": records, "summary": summary}, out, indent=2)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.DictWriter(
            out,
            fieldnames=["date", "time", "account_id", "stage", "action", "why"],
            lineterminator="\n",
        )
        writer.writeheader()
        writer.writerows(records)
        return
    headers = ["date", "time", "account", "stage", "action"]
    table = [[r["date"], r["time"], r["account_id"], r["stage"], r["action"]] for r in records]
    widths = [max([len(h), *(len(row[i]) for row in table)]) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    said = None
    for row, record in zip(table, records, strict=True):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        # One decision often emits several commands: its reasons are printed once.
        if (record["account_id"], record["time"], record["why"]) != said:
            out.write(f"    why: {record['why']}\n")
            said = (record["account_id"], record["time"], record["why"])
    out.write("\nsummary\n")
    out.write(f"  period            {summary['from']} .. {summary['to']}\n")
    out.write(f"  accounts          {summary['accounts']}\n")
    for stage, count in summary["notices_by_stage"].items():
        out.write(f"  notices {stage:<10}{count:>6}\n")
    out.write(f"  handoffs          {summary['handoffs']}\n")
    for currency, amount in summary["fees"].items():
        out.write(f"  fees {currency}          {amount}\n")
    stages = ", ".join(f"{s} {n}" for s, n in summary["final_stages"].items())
    out.write(f"  final stages      {stages}\n")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def parser() -> argparse.ArgumentParser:
    """The command line of ``dunning simulate``."""
    cli = argparse.ArgumentParser(
        prog="dunning simulate",
        description="Replay a ledger through an escalation policy, day by day.",
        epilog="The ledger CSV format is described in docs/dunning-svc.md.",
    )
    cli.add_argument("--policy", required=True, type=Path, help="Policy YAML file.")
    cli.add_argument("--ledger", required=True, type=Path, help="Ledger CSV file.")
    cli.add_argument("--from", dest="start", type=_day, help="First day shown.")
    cli.add_argument("--to", dest="end", type=_day, help="Last day simulated and shown.")
    cli.add_argument("--format", choices=["table", "csv", "json"], default="table")
    return cli


def main(argv: Iterable[str] | None = None, out: TextIO | None = None) -> int:
    """Run the simulator; 0 on success, 2 for unusable input (with the reason on stderr)."""
    args = parser().parse_args(list(argv) if argv is not None else None)
    out = out or sys.stdout
    try:
        policy = load_yaml(args.policy.read_text())
        lines, summary = simulate(policy, args.ledger.read_text(), args.start, args.end)
    except OSError as exc:
        print(f"dunning simulate: {exc}", file=sys.stderr)
        return 2
    except LedgerError as exc:
        print(f"dunning simulate: {args.ledger}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"dunning simulate: {args.policy}: {exc}", file=sys.stderr)
        return 2
    render(lines, summary, args.format, out)
    return 0


def main_exit() -> None:
    """The ``dunning-simulate`` console script (the same as ``dunning simulate``)."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
