"""Events published by invoice-svc on the ``invoices`` topic."""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from dunning_events import topics
from dunning_events.envelope import Event
from dunning_events.money import Amount, NonNegativeMoney, PositiveMoney

_ZONES = frozenset(available_timezones())


def _check_timezone(name: str) -> str:
    if name not in _ZONES:
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. 'Europe/Berlin')")
    return name


TimeZone = Annotated[str, AfterValidator(_check_timezone)]
InvoiceId = Annotated[str, Field(min_length=1, max_length=100)]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(_Part):
    """Who to write to about an account."""

    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 ()./-]{4,31}$")


class EarlyPaymentDiscount(_Part):
    """E.g. 2% off when paid within 10 days of issue."""

    percent: Amount = Field(gt=0, le=100)
    within_days: int = Field(ge=0, le=365)


class LateFee(_Part):
    """A flat fee or a percentage per month overdue, optionally capped."""

    kind: Literal["flat", "percent_per_month"]
    amount: Amount | None = Field(default=None, gt=0, description="Flat fee (kind=flat)")
    percent: Amount | None = Field(default=None, gt=0, le=100, description="kind=percent_per_month")
    cap: Amount | None = Field(default=None, gt=0, description="Most the fee can reach")


class Terms(_Part):
    """Payment terms printed on the invoice."""

    net_days: int = Field(default=30, ge=0, le=365)
    early_payment_discount: EarlyPaymentDiscount | None = None
    late_fee: LateFee | None = None


class InvoiceLine(_Part):
    """One line of an invoice."""

    description: str = Field(min_length=1, max_length=500)
    quantity: Amount = Field(gt=0)
    unit_price: Amount
    amount: Amount


class InvoiceIssued(Event):
    """An invoice was accepted from the ERP: the full invoice."""

    event_type: ClassVar[str] = "InvoiceIssued"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: InvoiceId
    account_name: str = Field(min_length=1, max_length=200)
    contact: Contact
    amount_due: PositiveMoney
    issue_date: date
    due_date: date
    segment: str = Field(default="standard", min_length=1, max_length=50)
    timezone: TimeZone = "UTC"
    locale: str = Field(default="en", min_length=2, max_length=20)
    terms: Terms = Field(default_factory=Terms)
    lines: list[InvoiceLine] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)


class InvoiceOverdue(Event):
    """An unpaid invoice passed its due date plus the tenant's grace days (sent once)."""

    event_type: ClassVar[str] = "InvoiceOverdue"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: InvoiceId
    balance: PositiveMoney
    due_date: date
    overdue_since: date = Field(description="First day the invoice counts as overdue")
    days_past_due: int = Field(ge=0)


class InvoiceVoided(Event):
    """The invoice was cancelled; nothing is owed on it any more."""

    event_type: ClassVar[str] = "InvoiceVoided"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: InvoiceId
    reason: str = Field(default="", max_length=1000)
    balance_voided: NonNegativeMoney


class InvoiceDisputed(Event):
    """The customer disputes (part of) the invoice; chasing that amount pauses."""

    event_type: ClassVar[str] = "InvoiceDisputed"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: InvoiceId
    reason: str = Field(min_length=1, max_length=1000)
    disputed_amount: PositiveMoney


class InvoiceDisputeResolved(Event):
    """A dispute ended: ``upheld`` credits the amount; ``rejected`` resumes chasing."""

    event_type: ClassVar[str] = "InvoiceDisputeResolved"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: InvoiceId
    resolution: Literal["upheld", "rejected"]
    credited_amount: NonNegativeMoney | None = None
    balance: NonNegativeMoney


class InvoiceSettled(Event):
    """The invoice's balance reached zero."""

    event_type: ClassVar[str] = "InvoiceSettled"
    topic: ClassVar[str] = topics.INVOICES

    invoice_id: InvoiceId
    amount_paid: NonNegativeMoney
    settled_at: AwareDatetime
