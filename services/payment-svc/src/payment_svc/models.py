"""payment-svc's HTTP bodies: what an ERP or a processor posts and what it reads back."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
)

from dunning_events.common import FreeText, Identifier
from dunning_events.money import Amount, Currency, PositiveAmount, check_money

MAX_BATCH = 1000
MAX_ALLOCATIONS = 1000

#: How a payment was made.
Method = Literal["ach", "sepa", "wire", "card", "check", "other"]

#: Path segments of /v1/payments/... routes that a payment id may not take.
ROUTE_WORDS = frozenset({"batch"})


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


class _Body(BaseModel):
    # Unknown fields are an error: a typo must not silently drop data.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class AllocationIn(_Body):
    """Part of the payment for one invoice."""

    invoice_id: Identifier
    amount: PositiveAmount = Field(
        description='Decimal string in the payment\'s currency, "250.00"'
    )


Metadata = dict[
    Annotated[FreeText, Field(max_length=100)], Annotated[FreeText, Field(max_length=1000)]
]


class PaymentIn(_Body):
    """A payment as the ERP posts it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "payment_id": "PAY-2026-0042",
                    "account_id": "ACME-7",
                    "currency": "EUR",
                    "amount": "1225.00",
                    "received_at": "2026-11-09T10:15:00+01:00",
                    "method": "sepa",
                    "reference": "INV-2026-0042",
                    "allocations": [{"invoice_id": "INV-2026-0042", "amount": "1225.00"}],
                }
            ]
        }
    )

    payment_id: Identifier = Field(
        json_schema_extra={"not": {"enum": list[JsonValue](sorted(ROUTE_WORDS))}},
    )
    account_id: Identifier
    currency: Currency
    amount: PositiveAmount = Field(description='Decimal string, e.g. "1250.00"')
    received_at: AwareDatetime = Field(description="When the money arrived (ISO 8601 with offset)")
    method: Method
    reference: FreeText | None = Field(default=None, max_length=200)
    allocations: list[AllocationIn] | None = Field(
        default=None,
        max_length=MAX_ALLOCATIONS,
        description="Invoices to pay; without it, the open invoices oldest due date first.",
    )
    metadata: Metadata = Field(
        default_factory=dict, max_length=50, json_schema_extra=_keys_are_text
    )

    @field_validator("payment_id")
    @classmethod
    def _addressable(cls, value: str) -> str:
        if value in ROUTE_WORDS:
            raise ValueError(f"{value!r} names a route (/v1/payments/{value}); choose another id")
        return value

    @field_validator("received_at")
    @classmethod
    def _plausible(cls, value: datetime) -> datetime:
        if not 2000 <= value.year <= 2199:
            raise ValueError("must lie between 2000-01-01 and 2199-12-31")
        return value

    @field_validator("amount")
    @classmethod
    def _amount_fits(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        currency = info.data.get("currency")
        if currency is not None:
            check_money(amount, currency)
        return amount

    @field_validator("allocations")
    @classmethod
    def _allocations_fit(
        cls, allocations: list[AllocationIn] | None, info: ValidationInfo
    ) -> list[AllocationIn] | None:
        currency = info.data.get("currency")
        if allocations and currency is not None:
            for index, allocation in enumerate(allocations):
                try:
                    check_money(allocation.amount, currency)
                except ValueError as exc:
                    raise ValueError(f"[{index}].amount: {exc}") from None
        return allocations


class BatchIn(_Body):
    """Up to 1,000 payments; each is validated and accepted on its own, in order."""

    payments: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


class ReverseIn(_Body):
    """Why the payment is reversed."""

    reason: FreeText = Field(
        min_length=1, max_length=1000, description="e.g. bounced check, chargeback"
    )


class AllocationOut(BaseModel):
    """Money of the payment applied to one invoice."""

    invoice_id: str
    amount: Amount
    discount: Amount = Field(description="Early-payment discount taken with it")
    kind: Literal["allocation", "credit"] = Field(
        description="allocation: when the payment was received; credit: applied later"
    )
    applied_at: datetime
    reversed: bool


class HeldOut(BaseModel):
    """Money the payer named for an invoice not yet known."""

    invoice_id: str
    amount: Amount


class PaymentOut(BaseModel):
    """A payment as it stands."""

    payment_id: str
    account_id: str
    currency: str
    amount: Amount
    received_at: datetime
    method: str
    reference: str | None
    metadata: dict[str, str]
    status: Literal["applied", "partially_applied", "unapplied", "reversed"]
    allocations: list[AllocationOut]
    held: list[HeldOut]
    credit: Amount = Field(description="Unapplied credit not held for a named invoice")
    unapplied: Amount = Field(description="credit + held")
    source: str = Field(description="api, or webhook:<provider>")
    reversed_at: datetime | None
    reversal_reason: str | None
    created_at: datetime
    updated_at: datetime


class PaymentPage(BaseModel):
    """One page of payments; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[PaymentOut]
    next_cursor: str | None


class BatchItemResult(BaseModel):
    """The outcome for one item of a batch."""

    index: int
    payment_id: str | None
    status: int = Field(description="201 created, 200 already accepted, 409 conflict, 422 invalid")
    payment: PaymentOut | None = None
    problem: dict[str, Any] | None = None


class BatchOut(BaseModel):
    """One result per posted item, in order."""

    accepted: int
    rejected: int
    results: list[BatchItemResult]


class CreditSourceOut(BaseModel):
    """A payment whose money is not applied yet."""

    payment_id: str
    received_at: datetime
    credit: Amount
    held: Amount


class CurrencyCredit(BaseModel):
    """Unapplied credit in one currency."""

    currency: str
    credit: Amount = Field(description="Free credit, applied to the next invoices")
    held: Amount = Field(description="Named for invoices not yet known")
    payments: list[CreditSourceOut]


class AccountCreditOut(BaseModel):
    """An account's unapplied credit per currency."""

    account_id: str
    credit: list[CurrencyCredit]


# -- webhooks ----------------------------------------------------------------


class WebhookPayment(PaymentIn):
    """The payment fields of a processor's notice: a payment as the ERP posts it, with
    ``method`` defaulting to ``card``."""

    method: Method = "card"


class WebhookReversal(_Body):
    """The fields of a processor's reversal notice."""

    payment_id: Identifier
    reason: FreeText = Field(default="chargeback", min_length=1, max_length=1000)


class WebhookIn(_Body):
    """A processor's notice (the generic format; docs/payment-svc.md)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "evt_1Nq2",
                    "type": "payment.succeeded",
                    "created": 1763980800,
                    "data": {
                        "payment_id": "ch_3Nq2",
                        "account_id": "ACME-7",
                        "currency": "EUR",
                        "amount": "1225.00",
                        "received_at": "2026-11-09T10:15:00Z",
                        "method": "card",
                    },
                }
            ]
        }
    )

    id: Identifier = Field(
        description="The processor's event id; a replay returns the first result"
    )
    type: Literal["payment.succeeded", "payment.reversed"]
    created: int | None = Field(default=None, ge=0, description="Unix seconds, informational")
    data: dict[str, Any]


class WebhookOut(BaseModel):
    """What a webhook did."""

    event_id: str
    type: str
    outcome: Literal["recorded", "already_recorded", "reversed", "already_reversed"]
    payment: PaymentOut
    differences: list[str] = Field(
        default_factory=list,
        description="Fields in which an already recorded payment differs from this notice",
    )
