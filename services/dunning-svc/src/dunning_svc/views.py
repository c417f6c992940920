"""Read models: an account, the aging report and DSO, computed from the projections."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from dunning_events import Contact, Money
from dunning_events.money import from_minor
from dunning_svc.core import Account
from dunning_svc.models import (
    AccountOut,
    AgingAccount,
    AgingBucket,
    AgingReport,
    DsoFigure,
    DsoReport,
    InstallmentOut,
    NoticeInvoiceOut,
    PlanOut,
    PolicyOut,
    PromiseOut,
    WorklistItem,
)
from dunning_svc.policy import PublishedPolicy


def _money(totals: dict[str, int]) -> list[Money]:
    return [Money(amount=from_minor(m, c), currency=c) for c, m in totals.items() if m]


def account_view(account: Account, now: datetime) -> AccountOut:
    """The account as ``GET /v1/accounts/{id}`` shows it, days counted in its time zone."""
    today = account.local_today(now)
    open_ = account.open_invoices()
    overdue = account.overdue_invoices(today)
    chased = account.totals(open_, chased=True)
    disputed = {c: m - chased[c] for c, m in account.totals(open_).items()}
    return AccountOut(
        account_id=account.account_id,
        account_name=account.account_name,
        segment=account.segment,
        stage=account.stage,
        policy_version=account.policy_version,
        open_balance=_money(account.totals(open_)),
        overdue_balance=_money(account.totals(overdue)),
        disputed_balance=_money(disputed),
        oldest_days_past_due=account.oldest_days_past_due(today),
        paused=account.paused,
        pause_reason=account.pause_reason,
        promise=_promise_view(account),
        plan=_plan_view(account),
        credit_hold=account.credit_hold,
        handoff=account.handoff,
        written_off=account.written_off,
        next_action_at=account.next_action_at,
        last_contacted_at=account.last_contact_at,
        last_sent_at=account.last_sent_at,
        contact=Contact.model_validate(account.contact) if account.contact else None,
        escalation_contact=(
            Contact.model_validate(account.escalation_contact)
            if account.escalation_contact
            else None
        ),
        invoices=[
            NoticeInvoiceOut(
                invoice_id=i.invoice_id,
                currency=i.currency,
                amount_due=from_minor(i.amount_due, i.currency),
                balance=from_minor(account.balance(i), i.currency),
                disputed=from_minor(min(i.disputed, account.balance(i)), i.currency),
                due_date=i.due_date,
                days_past_due=(today - i.due_date).days if i.due_date else 0,
                kind=i.kind,
            )
            for i in open_
        ],
    )


def _one(minor: int, currency: str) -> Money:
    return Money(amount=from_minor(minor, currency), currency=currency)


def _promise_view(account: Account) -> PromiseOut | None:
    promise = account.promise
    if promise is None:
        return None
    currency = promise.currency
    return PromiseOut(
        promise_id=promise.promise_id,
        amount=_one(promise.amount, currency),
        promised_date=promise.promised_date,
        recorded_at=promise.since,
        amount_received=_one(account.promise_received(), currency),
    )


def _plan_view(account: Account) -> PlanOut | None:
    plan = account.plan
    if plan is None:
        return None
    currency = plan.currency
    installments = account.plan_installments()
    received = account.plan_received()
    return PlanOut(
        plan_id=plan.plan_id,
        currency=currency,
        agreed_at=plan.since,
        installments=[
            InstallmentOut(due_date=due, amount=_one(amount, currency), paid=paid)
            for due, amount, paid in installments
        ],
        amount_received=_one(received, currency),
    )


_BUCKETS = ("current", "days_1_30", "days_31_60", "days_61_90", "days_over_90")


def _bucket(days: int) -> str:
    if days <= 0:
        return "current"
    if days <= 30:
        return "days_1_30"
    if days <= 60:
        return "days_31_60"
    if days <= 90:
        return "days_61_90"
    return "days_over_90"


def _buckets(sums: dict[str, dict[str, Decimal]]) -> list[AgingBucket]:
    return [
        AgingBucket(currency=c, total=sum(b.values(), start=Decimal(0)), **b)
        for c, b in sorted(sums.items())
    ]


class AgingTally:
    """Open balances as they stood at the end of ``as_of`` (``Account.balance_on``) by days
    past due on that day, per currency, in total and (``by_account``) per account, added
    up one account at a time, so a report over a million accounts never holds them all.
    Written-off accounts are left out."""

    def __init__(self, as_of: date, *, by_account: bool) -> None:
        self.as_of = as_of
        self.by_account = by_account
        self.totals: dict[str, dict[str, Decimal]] = {}
        self.lines: list[AgingAccount] = []

    def add(self, account: Account) -> None:
        """Count one account."""
        if account.written_off:
            return
        mine: dict[str, dict[str, Decimal]] = {}
        for invoice in account.invoices.values():
            # As it stood on as_of: an invoice paid since then is still open there.
            owed = account.balance_on(invoice, self.as_of)
            if owed <= 0:
                continue
            days = (self.as_of - invoice.due_date).days if invoice.due_date else 0
            amount = from_minor(owed, invoice.currency)
            for target in (self.totals, mine):
                row = target.setdefault(invoice.currency, dict.fromkeys(_BUCKETS, Decimal(0)))
                row[_bucket(days)] += amount
        if self.by_account and mine:
            self.lines.append(AgingAccount(account_id=account.account_id, buckets=_buckets(mine)))

    def report(self) -> AgingReport:
        """The report of the accounts added."""
        return AgingReport(as_of=self.as_of, totals=_buckets(self.totals), accounts=self.lines)


#: The period DSO is computed over unless asked otherwise: the last 90 days.
DSO_DAYS = 90


def dso_period_start(end: date) -> date:
    """The first day of the default DSO period ending on ``end``."""
    return date.fromordinal(end.toordinal() - (DSO_DAYS - 1))


class DsoTally:
    """Standard DSO per currency: receivables open at the end of the period (balances as
    they stood then, ``Account.balance_on``) divided by the credit sales invoiced in the
    period, times its days; added up one account at a time."""

    def __init__(self, start: date, end: date) -> None:
        self.start, self.end = start, end
        self.receivables: dict[str, int] = {}
        self.sales: dict[str, int] = {}

    def add(self, account: Account) -> None:
        """Count one account."""
        for invoice in account.invoices.values():
            if not invoice.issued or invoice.issue_date is None or invoice.issue_date > self.end:
                continue
            currency = invoice.currency
            if self.start <= invoice.issue_date and not invoice.void:
                self.sales[currency] = self.sales.get(currency, 0) + invoice.amount_due
            if not account.written_off:
                owed = account.balance_on(invoice, self.end)
                self.receivables[currency] = self.receivables.get(currency, 0) + owed

    def report(self) -> DsoReport:
        """The report of the accounts added."""
        days = (self.end - self.start).days + 1
        figures = []
        for currency in sorted(set(self.receivables) | set(self.sales)):
            owed = from_minor(self.receivables.get(currency, 0), currency)
            sold = from_minor(self.sales.get(currency, 0), currency)
            value = (owed / sold * days).quantize(Decimal("0.1")) if sold else None
            figures.append(
                DsoFigure(
                    currency=currency, receivables=owed, credit_sales=sold, days=days, dso=value
                )
            )
        return DsoReport(period_from=self.start, period_to=self.end, figures=figures)


def worklist_item(account: Account, now: datetime) -> WorklistItem:
    """One line of the worklist, its balances as ``account_view`` shows them."""
    view = account_view(account, now)
    return WorklistItem(
        account_id=account.account_id,
        account_name=account.account_name,
        segment=account.segment,
        stage=account.stage,
        overdue_balance=view.overdue_balance,
        oldest_days_past_due=view.oldest_days_past_due,
        paused=account.paused,
        next_action_at=account.next_action_at,
    )


def policy_view(published: PublishedPolicy) -> PolicyOut:
    """A published policy version as the policy routes show it."""
    return PolicyOut(
        segment=published.segment,
        version=published.version,
        apply_to_running=published.apply_to_running,
        created_by=published.created_by,
        created_at=published.created_at,
        policy=published.policy.model_dump(mode="json", exclude={"version"}),
    )
