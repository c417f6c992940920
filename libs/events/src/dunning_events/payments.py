"""Events published by payment-svc on the ``payments`` topic."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Self

from pydantic import Field, model_validator

from dunning_events import topics
from dunning_events.common import Identifier, Instant, Part
from dunning_events.envelope import Event
from dunning_events.money import NonNegativeMoney, PositiveMoney

__all__ = ["Allocation", "PaymentReceived", "PaymentReversed"]


class Allocation(Part):
    """The part of a payment applied to one invoice."""

    invoice_id: Identifier = Field(description="The invoice paid.")
    amount: PositiveMoney = Field(description="How much of the payment went to it.")


def _allocated_in(currency: str, allocations: list[Allocation]) -> Decimal:
    """Sum of ``allocations``, each of which must be in ``currency``."""
    for i, allocation in enumerate(allocations):
        if allocation.amount.currency != currency:
            raise ValueError(
                f"allocations[{i}].amount is in {allocation.amount.currency}, "
                f"but the payment is in {currency}"
            )
    return sum((a.amount.amount for a in allocations), Decimal(0))


class PaymentReceived(Event):
    """Money arrived from the customer. allocations say which invoices it paid; what is
    left is unapplied credit, so amount = sum(allocations) + unapplied, all in one
    currency."""

    event_type: ClassVar[str] = "PaymentReceived"
    topic: ClassVar[str] = topics.PAYMENTS

    payment_id: Identifier = Field(description="The payment's id, unique per tenant.")
    amount: PositiveMoney = Field(description="The amount received.")
    received_at: Instant = Field(description="When the money arrived.")
    method: str = Field(
        min_length=1, max_length=50, description="How it was paid, e.g. bank_transfer, card."
    )
    reference: str | None = Field(
        default=None, max_length=200, description="Remittance reference the payer gave, if any."
    )
    allocations: list[Allocation] = Field(
        default_factory=list, description="Invoices this payment paid, oldest due date first."
    )
    unapplied: NonNegativeMoney = Field(description="Credit left over for later invoices.")

    @model_validator(mode="after")
    def _adds_up(self) -> Self:
        currency = self.amount.currency
        allocated = _allocated_in(currency, self.allocations)
        if self.unapplied.currency != currency:
            raise ValueError(
                f"unapplied is in {self.unapplied.currency}, but the payment is in {currency}"
            )
        if allocated + self.unapplied.amount != self.amount.amount:
            raise ValueError(
                f"allocations ({allocated}) plus unapplied ({self.unapplied.amount}) "
                f"must equal the amount ({self.amount.amount})"
            )
        return self


class PaymentReversed(Event):
    """A payment bounced or was charged back; the invoices it paid reopen by the
    allocations listed."""

    event_type: ClassVar[str] = "PaymentReversed"
    topic: ClassVar[str] = topics.PAYMENTS

    payment_id: Identifier = Field(description="The payment reversed (its PaymentReceived).")
    amount: PositiveMoney = Field(description="The amount taken back.")
    reason: str = Field(
        default="", max_length=1000, description="Why, e.g. chargeback, insufficient funds."
    )
    reversed_at: Instant = Field(description="When the reversal happened.")
    allocations: list[Allocation] = Field(
        default_factory=list,
        description="Allocations undone: each invoice's balance grows by its amount.",
    )

    @model_validator(mode="after")
    def _within_amount(self) -> Self:
        allocated = _allocated_in(self.amount.currency, self.allocations)
        if allocated > self.amount.amount:
            raise ValueError(
                f"allocations ({allocated}) exceed the amount reversed ({self.amount.amount})"
            )
        return self
