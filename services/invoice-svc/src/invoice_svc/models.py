"""invoice-svc's HTTP bodies: what an ERP posts and what it reads back."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from dunning_events import Contact, EarlyPaymentDiscount, InvoiceLine, LateFee
from dunning_events.common import BoundedDay, FreeText, Identifier
from dunning_events.invoices import TimeZone
from dunning_events.money import Amount, Currency, PositiveAmount, check_money

MAX_BATCH = 1000


def _places_fit(amount: Decimal, currency: str | None) -> None:
    if currency is not None:
        check_money(amount, currency)


def _keys_are_text(schema: dict[str, Any]) -> None:
    # pydantic renders a pattern on dict keys as patternProperties, which lets any other key
    # through; the keys' rule belongs in propertyNames, the values' in additionalProperties.
    patterns = schema.pop("patternProperties", {})
    if len(patterns) == 1:
        [(pattern, values)] = patterns.items()
        schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": pattern}
        schema["additionalProperties"] = values
    else:
        schema["patternProperties"] = patterns


#: Path segments of /v1/invoices/... routes that an invoice id may not take.
ROUTE_WORDS = frozenset({"batch"})


class _Body(BaseModel):
    # Unknown fields are an error: a typo must not silently drop data.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class TermsIn(_Body):
    """Payment terms."""

    net_days: int = Field(default=30, ge=0, le=365)


class InvoiceIn(_Body):
    """An invoice as the ERP posts it."""

    # A valid example: the docs show it, and fuzzers start from it (a random body
    # rarely passes the cross-field rules, so it would never reach the deeper code).
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "invoice_id": "INV-2026-0042",
                    "account_id": "ACME-7",
                    "account_name": "Acme Tools GmbH",
                    "contact": {"name": "Accounts payable", "email": "ap@acme.example"},
                    "currency": "EUR",
                    "amount_due": "1250.00",
                    "issue_date": "2026-11-01",
                    "due_date": "2026-12-01",
                    "timezone": "Europe/Berlin",
                    "locale": "de-DE",
                    "late_fee": {"kind": "flat", "amount": "40.00"},
                    "lines": [
                        {
                            "description": "Consulting, November",
                            "quantity": "10",
                            "unit_price": "125.00",
                            "amount": "1250.00",
                        }
                    ],
                }
            ]
        }
    )

    invoice_id: Identifier = Field(
        # GET /v1/invoices/batch would not reach an invoice called "batch": the batch
        # route's path comes first (OpenAPI matches concrete paths before templates).
        json_schema_extra={"not": {"enum": list[JsonValue](sorted(ROUTE_WORDS))}},
    )
    account_id: Identifier
    account_name: FreeText = Field(min_length=1, max_length=200)
    contact: Contact
    currency: Currency
    amount_due: PositiveAmount = Field(description='Decimal string, e.g. "1250.00"')
    issue_date: BoundedDay
    due_date: BoundedDay
    segment: str = Field(default="standard", pattern=r"^[a-z0-9_-]{1,50}$")
    timezone: TimeZone = "UTC"
    locale: str = Field(default="en", pattern=r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
    terms: TermsIn | None = None
    early_payment_discount: EarlyPaymentDiscount | None = None
    late_fee: LateFee | None = None
    lines: list[InvoiceLine] = Field(default_factory=list, max_length=500)
    metadata: dict[
        Annotated[FreeText, Field(max_length=100)], Annotated[FreeText, Field(max_length=1000)]
    ] = Field(default_factory=dict, max_length=50, json_schema_extra=_keys_are_text)

    @field_validator("invoice_id")
    @classmethod
    def _addressable(cls, value: str) -> str:
        if value in ROUTE_WORDS:
            raise ValueError(f"{value!r} names a route (/v1/invoices/{value}); choose another id")
        return value

    @field_validator("amount_due")
    @classmethod
    def _amount_due(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        if amount <= 0:
            raise ValueError("must be greater than zero")
        _places_fit(amount, info.data.get("currency"))
        return amount

    @field_validator("due_date")
    @classmethod
    def _due_after_issue(cls, due: date, info: ValidationInfo) -> date:
        issued = info.data.get("issue_date")
        if issued is not None and due < issued:
            raise ValueError(f"must not be before issue_date ({issued.isoformat()})")
        return due

    @field_validator("lines")
    @classmethod
    def _lines_add_up(cls, lines: list[InvoiceLine], info: ValidationInfo) -> list[InvoiceLine]:
        if not lines:
            return lines
        currency, amount_due = info.data.get("currency"), info.data.get("amount_due")
        for line in lines:
            _places_fit(line.amount, currency)
        total = sum((line.amount for line in lines), Decimal(0))
        if amount_due is not None and total != amount_due:
            raise ValueError(f"line amounts add up to {total}, not amount_due {amount_due}")
        return lines

    @field_validator("late_fee")
    @classmethod
    def _late_fee_complete(cls, fee: LateFee | None) -> LateFee | None:
        if fee is not None and fee.kind == "flat" and fee.amount is None:
            raise ValueError("a flat late fee needs an amount")
        if fee is not None and fee.kind == "percent_per_month" and fee.percent is None:
            raise ValueError("a percent_per_month late fee needs a percent")
        return fee

    @model_validator(mode="after")
    def _late_fee_in_currency(self) -> InvoiceIn:
        # The fee's amounts are in the invoice's currency, which the fee itself does not
        # know: checked here, and reported at the fee's own fields.
        problems: list[InitErrorDetails] = []
        for name in ("amount", "cap"):
            value = getattr(self.late_fee, name, None) if self.late_fee else None
            if value is None:
                continue
            try:
                check_money(value, self.currency)
            except ValueError as exc:
                problems.append(
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", str(exc)),
                        loc=("late_fee", name),
                        input=str(value),
                    )
                )
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


class BatchIn(_Body):
    """Up to 1,000 invoices; each is validated and accepted on its own."""

    invoices: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


class VoidIn(_Body):
    """Why the invoice is voided."""

    reason: FreeText = Field(default="", max_length=1000)


class DisputeIn(_Body):
    """The customer's dispute; without an amount the whole balance is disputed."""

    reason: FreeText = Field(min_length=1, max_length=1000)
    amount: PositiveAmount | None = None


class DisputeResolveIn(_Body):
    """How a dispute ended: ``upheld`` credits the disputed amount, ``rejected`` resumes chasing."""

    resolution: Literal["upheld", "rejected"]
    note: FreeText = Field(default="", max_length=1000)


class DisputeOut(BaseModel):
    """The open dispute of an invoice."""

    reason: str
    amount: Amount
    opened_at: datetime


class InvoiceOut(BaseModel):
    """An invoice as it stands."""

    invoice_id: str
    account_id: str
    account_name: str
    contact: Contact
    currency: str
    amount_due: Amount
    amount_paid: Amount
    credited: Amount
    balance: Amount = Field(description="What is still owed; 0 on a void invoice.")
    balance_voided: Amount | None = Field(
        default=None, description="On a void invoice: what was owed when it was voided."
    )
    status: Literal["open", "partially_paid", "paid", "void"]
    disputed: bool
    dispute: DisputeOut | None
    days_past_due: int
    overdue_since: date
    issue_date: date
    due_date: date
    segment: str
    timezone: str
    locale: str
    terms: TermsIn | None
    early_payment_discount: EarlyPaymentDiscount | None
    late_fee: LateFee | None
    lines: list[InvoiceLine]
    metadata: dict[str, str]
    void_reason: str | None
    voided_at: datetime | None
    settled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class InvoicePage(BaseModel):
    """One page of invoices; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[InvoiceOut]
    next_cursor: str | None


class BatchItemResult(BaseModel):
    """The outcome for one item of a batch."""

    index: int
    invoice_id: str | None
    status: int = Field(description="201 created, 200 already accepted, 409 conflict, 422 invalid")
    invoice: InvoiceOut | None = None
    problem: dict[str, Any] | None = None


class BatchOut(BaseModel):
    """One result per posted item, in order."""

    accepted: int
    rejected: int
    results: list[BatchItemResult]
