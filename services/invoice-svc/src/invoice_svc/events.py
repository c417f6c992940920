"""The events invoice-svc publishes, built from requests and stored rows."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from dunning_events import (
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceSettled,
    InvoiceVoided,
    Money,
    Terms,
)
from dunning_runtime.db import utc
from invoice_svc import domain
from invoice_svc.models import InvoiceIn
from invoice_svc.storage import Row, balance_of, money


def issued(item: InvoiceIn) -> InvoiceIssued:
    """``InvoiceIssued`` for an accepted invoice: the whole invoice, so subscribers need
    no call back."""
    terms = Terms(
        net_days=item.terms.net_days if item.terms else 30,
        early_payment_discount=item.early_payment_discount,
        late_fee=item.late_fee,
    )
    return InvoiceIssued(
        account_id=item.account_id,
        invoice_id=item.invoice_id,
        account_name=item.account_name,
        contact=item.contact,
        amount_due=Money(amount=item.amount_due, currency=item.currency),
        issue_date=item.issue_date,
        due_date=item.due_date,
        segment=item.segment,
        timezone=item.timezone,
        locale=item.locale,
        terms=terms,
        lines=list(item.lines),
        metadata=item.metadata,
    )


def settled(row: Row, now: datetime) -> InvoiceSettled:
    """``InvoiceSettled`` for a row that has just become paid."""
    return InvoiceSettled(
        account_id=row["account_id"],
        invoice_id=row["invoice_id"],
        amount_paid=money(row["amount_paid_minor"], row["currency"]),
        settled_at=now,
    )


def voided(row: Row, reason: str, written_off: Decimal) -> InvoiceVoided:
    """``InvoiceVoided``; ``written_off`` is what was owed when it was voided."""
    return InvoiceVoided(
        account_id=row["account_id"],
        invoice_id=row["invoice_id"],
        reason=reason,
        balance_voided=Money(amount=written_off, currency=row["currency"]),
    )


def disputed(row: Row, reason: str, amount: Decimal) -> InvoiceDisputed:
    """``InvoiceDisputed`` over ``amount``."""
    return InvoiceDisputed(
        account_id=row["account_id"],
        invoice_id=row["invoice_id"],
        reason=reason,
        disputed_amount=Money(amount=amount, currency=row["currency"]),
    )


def dispute_resolved(
    row: Row, resolution: str, before: domain.Balance, after: domain.Balance
) -> InvoiceDisputeResolved:
    """``InvoiceDisputeResolved``, with the credit an upheld dispute granted."""
    currency = row["currency"]
    credited = None
    if resolution == "upheld":
        credited = Money(amount=after.credited - before.credited, currency=currency)
    return InvoiceDisputeResolved(
        account_id=row["account_id"],
        invoice_id=row["invoice_id"],
        resolution=resolution,
        credited_amount=credited,
        balance=Money(amount=after.balance, currency=currency),
    )


def overdue(row: Row, now: datetime) -> InvoiceOverdue:
    """``InvoiceOverdue`` for a row whose overdue instant has passed at ``now``."""
    overdue_at = utc(row["overdue_at"])
    assert overdue_at is not None
    return InvoiceOverdue(
        account_id=row["account_id"],
        invoice_id=row["invoice_id"],
        balance=Money(amount=balance_of(row).balance, currency=row["currency"]),
        due_date=row["due_date"],
        overdue_since=domain.local_date(overdue_at, row["timezone"]),
        days_past_due=domain.days_past_due(row["due_date"], row["timezone"], now),
    )
