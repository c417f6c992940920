"""Events published by invoice-svc on the ``invoices`` topic."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, model_validator

from dunning_events import topics
from dunning_events.common import (
    Contact,
    Day,
    FreeText,
    Identifier,
    Instant,
    Locale,
    Part,
    Segment,
    TimeZone,
)
from dunning_events.envelope import Event
from dunning_events.money import (
    Amount,
    NonNegativeMoney,
    Percent,
    PositiveAmount,
    PositiveMoney,
    check_places,
    quantize,
)

__all__ = [
    "Contact",
    "EarlyPaymentDiscount",
    "InvoiceDisputeResolved",
    "InvoiceDisputed",
    "InvoiceIssued",
    "InvoiceLine",
    "InvoiceOverdue",
    "InvoiceSettled",
    "InvoiceVoided",
    "LateFee",
    "Terms",
    "TimeZone",
    "early_payment_discount",
    "late_fee",
]


class EarlyPaymentDiscount(Part):
    """A discount for paying early, e.g. 2% off when paid within 10 days of issue."""

    percent: Percent = Field(description='Discount in percent, e.g. "2".')
    within_days: int = Field(ge=0, le=365, description="Days after the issue date it applies.")


class LateFee(Part):
    """A late fee: a flat amount, or a percentage of the balance per month overdue.

    ``amount`` and ``cap`` are in the invoice's currency.
    """

    kind: Literal["flat", "percent_per_month"] = Field(description="How the fee is computed.")
    amount: PositiveAmount | None = Field(
        default=None, description="The fee when kind is flat; null otherwise."
    )
    percent: Percent | None = Field(
        default=None,
        description="Percent of the balance per started month when kind is percent_per_month.",
    )
    cap: PositiveAmount | None = Field(
        default=None, description="The most the fee can reach in total, if capped."
    )

    @model_validator(mode="after")
    def _complete_for_its_kind(self) -> Self:
        if self.kind == "flat" and (self.amount is None or self.percent is not None):
            raise ValueError("a flat late fee needs an amount and no percent")
        if self.kind == "percent_per_month" and (self.percent is None or self.amount is not None):
            raise ValueError("a percent_per_month late fee needs a percent and no amount")
        return self


#: A "month" of a percent-per-month late fee: every started 30 days overdue.
FEE_MONTH_DAYS = 30


def late_fee(
    balance: Decimal,
    currency: str,
    *,
    kind: str,
    days_overdue: int,
    amount: Decimal | None = None,
    percent: Decimal | None = None,
    cap: Decimal | None = None,
) -> Decimal:
    """The late fee ``LateFee`` terms charge on ``balance`` after ``days_overdue`` days:
    ``flat``, the amount once overdue; ``percent_per_month``, the percentage per started
    30-day month overdue. Either is limited by ``cap`` and rounded half up to the
    currency. What the contract means by its terms: every service computes it here.
    """
    if days_overdue <= 0 or balance <= 0:
        return quantize(Decimal(0), currency)
    if kind == "flat":
        fee = amount or Decimal(0)
    elif kind == "percent_per_month":
        months = -(-days_overdue // FEE_MONTH_DAYS)  # started months
        fee = balance * (percent or Decimal(0)) / 100 * months
    else:
        raise ValueError(f"unknown late fee kind {kind!r}")
    if cap is not None:
        fee = min(fee, cap)
    return quantize(fee, currency)


def early_payment_discount(
    amount_due: Decimal,
    currency: str,
    *,
    percent: Decimal,
    within_days: int,
    issue_date: date,
    paid_on: date,
) -> Decimal:
    """The discount ``EarlyPaymentDiscount`` terms grant for paying on ``paid_on`` (a date
    in the invoice's time zone): ``percent`` of ``amount_due`` up to and including issue
    date + ``within_days``, rounded half up to the currency; 0 after."""
    if paid_on > issue_date + timedelta(days=within_days):
        return quantize(Decimal(0), currency)
    return quantize(amount_due * percent / 100, currency)


class Terms(Part):
    """Payment terms printed on the invoice."""

    net_days: int = Field(default=30, ge=0, le=365, description="Days from issue to due date.")
    early_payment_discount: EarlyPaymentDiscount | None = Field(
        default=None, description="Discount for early payment, if offered."
    )
    late_fee: LateFee | None = Field(
        default=None, description="Fee charged once overdue, if any; final notices state it."
    )


class InvoiceLine(Part):
    """One line of an invoice; prices and amounts are in the invoice's currency."""

    description: FreeText = Field(min_length=1, max_length=500, description="What was sold.")
    quantity: PositiveAmount = Field(description='How many, e.g. "10" or "2.5".')
    unit_price: Amount = Field(description="Price of one unit (may have more decimals).")
    amount: Amount = Field(description="The line total, in the currency's decimal places.")


class InvoiceIssued(Event):
    """An invoice was accepted from the ERP. Carries the full invoice, so subscribers
    need no call back to invoice-svc."""

    event_type: ClassVar[str] = "InvoiceIssued"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: Identifier = Field(description="The ERP's invoice id, unique per tenant.")
    account_name: str = Field(
        min_length=1, max_length=200, description="Customer's name, as notices address it."
    )
    contact: Contact = Field(description="Who receives notices about this account.")
    amount_due: PositiveMoney = Field(description="Invoice total; its currency is the invoice's.")
    issue_date: Day = Field(description="Date printed on the invoice.")
    due_date: Day = Field(description="Date by which it must be paid; not before issue_date.")
    segment: Segment = Field(
        default="standard", description="Escalation policy segment of the account."
    )
    timezone: TimeZone = "UTC"
    locale: Locale = "en"
    terms: Terms = Field(default_factory=Terms, description="Payment terms.")
    lines: list[InvoiceLine] = Field(
        default_factory=list, max_length=500, description="Invoice lines; may be empty."
    )
    # Bounded as invoice-svc's API bounds them: 50 fields, keys of 100 characters and
    # values of 1,000.
    metadata: dict[
        Annotated[str, Field(max_length=100)], Annotated[str, Field(max_length=1000)]
    ] = Field(
        default_factory=dict,
        max_length=50,
        description="Free-form ERP fields, passed through untouched.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.due_date < self.issue_date:
            raise ValueError("due_date must not be before issue_date")
        # Line amounts and fees carry no currency of their own: they are in the
        # invoice's, and must fit its decimal places like any amount in it.
        currency = self.amount_due.currency
        amounts: list[tuple[str, Decimal | None]] = [
            (f"lines[{i}].amount", line.amount) for i, line in enumerate(self.lines)
        ]
        if self.terms.late_fee is not None:
            amounts.append(("terms.late_fee.amount", self.terms.late_fee.amount))
            amounts.append(("terms.late_fee.cap", self.terms.late_fee.cap))
        for name, amount in amounts:
            if amount is not None:
                try:
                    check_places(amount, currency)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return self


class InvoiceOverdue(Event):
    """An unpaid invoice passed its due date plus the tenant's grace days. Sent once per
    invoice; later days past due follow from due_date and the clock."""

    event_type: ClassVar[str] = "InvoiceOverdue"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: Identifier = Field(description="The overdue invoice.")
    balance: PositiveMoney = Field(description="What is still owed on it.")
    due_date: Day = Field(description="The invoice's due date.")
    overdue_since: Day = Field(
        description="First day it counts as overdue: due_date + grace days + 1."
    )
    days_past_due: int = Field(ge=0, description="Days past due_date when the event was sent.")

    @model_validator(mode="after")
    def _after_due(self) -> Self:
        if self.overdue_since <= self.due_date:
            raise ValueError("overdue_since must be after due_date")
        return self


class InvoiceVoided(Event):
    """The invoice was cancelled; nothing is owed on it any more."""

    event_type: ClassVar[str] = "InvoiceVoided"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: Identifier = Field(description="The voided invoice.")
    reason: str = Field(default="", max_length=1000, description="Why, as the ERP gave it.")
    balance_voided: NonNegativeMoney = Field(description="The balance that was open when voided.")


class InvoiceDisputed(Event):
    """The customer disputes (part of) the invoice; chasing that amount pauses."""

    event_type: ClassVar[str] = "InvoiceDisputed"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: Identifier = Field(description="The disputed invoice.")
    reason: str = Field(min_length=1, max_length=1000, description="The customer's reason.")
    disputed_amount: PositiveMoney = Field(description="The part of the balance in dispute.")


class InvoiceDisputeResolved(Event):
    """A dispute ended. "upheld": the customer was right and credited_amount is taken
    off the invoice; "rejected": the amount is owed and chasing resumes."""

    event_type: ClassVar[str] = "InvoiceDisputeResolved"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: Identifier = Field(description="The invoice whose dispute ended.")
    resolution: Literal["upheld", "rejected"] = Field(description="How the dispute ended.")
    credited_amount: NonNegativeMoney | None = Field(
        default=None, description="Credit granted when upheld; null or zero when rejected."
    )
    balance: NonNegativeMoney = Field(description="The invoice's balance after the resolution.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        credited = self.credited_amount
        if credited is not None:
            if credited.currency != self.balance.currency:
                raise ValueError(
                    f"credited_amount is in {credited.currency}, "
                    f"but the balance is in {self.balance.currency}"
                )
            if self.resolution == "rejected" and credited.amount > 0:
                raise ValueError("a rejected dispute credits nothing")
        return self


class InvoiceSettled(Event):
    """The invoice's balance reached zero (by payments, credits or both)."""

    event_type: ClassVar[str] = "InvoiceSettled"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: Identifier = Field(description="The settled invoice.")
    amount_paid: NonNegativeMoney = Field(description="Total paid on it (credits not included).")
    settled_at: Instant = Field(description="When the balance reached zero.")
