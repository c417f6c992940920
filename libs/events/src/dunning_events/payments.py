"""Events published by payment-svc on the ``payments`` topic."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Self

from pydantic import Field, model_validator

from dunning_events import topics
from dunning_events.common import Identifier, Instant, Part
from dunning_events.envelope import Event
from dunning_events.money import Money, NonNegativeMoney, PositiveMoney

__all__ = ["Allocation", "CreditApplied", "HeldAllocation", "PaymentReceived", "PaymentReversed"]


class Allocation(Part):
    """The part of a payment applied to one invoice, with the early-payment discount it
    earned there: the invoice's balance falls by ``amount`` + ``discount``."""

    invoice_id: Identifier = Field(description="The invoice paid.")
    amount: PositiveMoney = Field(description="How much of the payment went to it.")
    discount: NonNegativeMoney | None = Field(
        default=None,
        description=(
            "Early-payment discount taken on the invoice with this allocation (the terms "
            "forgive it); null or zero when none. The invoice's balance falls by amount + "
            "discount; the discount is not money received."
        ),
    )

    def settles(self) -> Decimal:
        """What the allocation takes off the invoice's balance: amount + discount."""
        discount = self.discount.amount if self.discount is not None else Decimal(0)
        return self.amount.amount + discount


class HeldAllocation(Part):
    """Part of a payment the payer meant for an invoice not yet known; it is applied,
    by a ``CreditApplied``, when the invoice arrives."""

    invoice_id: Identifier = Field(description="The invoice the payer named.")
    amount: PositiveMoney = Field(description="How much waits for it.")


def _allocated_in(currency: str, allocations: list[Allocation]) -> Decimal:
    """Sum of ``allocations``' amounts, each of which (discount too) must be in ``currency``."""
    for i, allocation in enumerate(allocations):
        for name, money in (("amount", allocation.amount), ("discount", allocation.discount)):
            if money is not None and money.currency != currency:
                raise ValueError(
                    f"allocations[{i}].{name} is in {money.currency}, "
                    f"but the payment is in {currency}"
                )
    return sum((a.amount.amount for a in allocations), Decimal(0))


def _check_currency(name: str, money: Money, currency: str) -> None:
    if money.currency != currency:
        raise ValueError(f"{name} is in {money.currency}, but the payment is in {currency}")


class PaymentReceived(Event):
    """Money arrived from the customer. allocations say which invoices it paid (and the
    discount each earned); what is left is unapplied credit, so amount =
    sum(allocation amounts) + unapplied, all in one currency. ``held`` is the part of
    unapplied the payer named for invoices not yet known."""

    event_type: ClassVar[str] = "PaymentReceived"
    topic: ClassVar[str] = topics.PAYMENTS

    payment_id: Identifier = Field(description="The payment's id, unique per tenant.")
    amount: PositiveMoney = Field(description="The amount received.")
    received_at: Instant = Field(description="When the money arrived.")
    method: str = Field(
        min_length=1,
        max_length=50,
        description="How it was paid: ach, sepa, wire, card, check or other.",
    )
    reference: str | None = Field(
        default=None, max_length=200, description="Remittance reference the payer gave, if any."
    )
    allocations: list[Allocation] = Field(
        default_factory=list,
        description="Invoices this payment paid, in the order they were paid.",
    )
    unapplied: NonNegativeMoney = Field(description="Credit left over for later invoices.")
    held: list[HeldAllocation] = Field(
        default_factory=list,
        description=(
            "Part of unapplied named for invoices not yet known; applied by CreditApplied "
            "when each arrives (capped at its balance, the rest stays credit)."
        ),
    )

    @model_validator(mode="after")
    def _adds_up(self) -> Self:
        currency = self.amount.currency
        allocated = _allocated_in(currency, self.allocations)
        _check_currency("unapplied", self.unapplied, currency)
        if allocated + self.unapplied.amount != self.amount.amount:
            raise ValueError(
                f"allocations ({allocated}) plus unapplied ({self.unapplied.amount}) "
                f"must equal the amount ({self.amount.amount})"
            )
        for i, hold in enumerate(self.held):
            _check_currency(f"held[{i}].amount", hold.amount, currency)
        held = sum((h.amount.amount for h in self.held), Decimal(0))
        if held > self.unapplied.amount:
            raise ValueError(f"held ({held}) exceeds unapplied ({self.unapplied.amount})")
        return self


class CreditApplied(Event):
    """Credit of an earlier payment (unapplied, or held for this invoice) was applied to
    an invoice that arrived later. Like an allocation of that payment: the invoice's
    balance falls by amount + discount, and a reversal of the payment undoes it."""

    event_type: ClassVar[str] = "CreditApplied"
    topic: ClassVar[str] = topics.PAYMENTS

    payment_id: Identifier = Field(description="The payment whose credit was used.")
    invoice_id: Identifier = Field(description="The invoice it paid.")
    amount: PositiveMoney = Field(description="How much of the credit went to the invoice.")
    discount: NonNegativeMoney | None = Field(
        default=None, description="Early-payment discount taken with it; null or zero if none."
    )
    credit_left: NonNegativeMoney = Field(
        description="The payment's unapplied credit after this (held amounts included)."
    )
    applied_at: Instant = Field(description="When the credit was applied.")

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        currency = self.amount.currency
        if self.discount is not None:
            _check_currency("discount", self.discount, currency)
        _check_currency("credit_left", self.credit_left, currency)
        return self


class PaymentReversed(Event):
    """A payment bounced or was charged back; the invoices it paid reopen by the
    allocations listed (amount + discount each), credit applications included."""

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
        description=(
            "Allocations undone, those of PaymentReceived and of each CreditApplied: each "
            "invoice's balance grows by its amount + discount."
        ),
    )
    credit_voided: NonNegativeMoney | None = Field(
        default=None, description="Unapplied credit of the payment that is gone with it."
    )

    @model_validator(mode="after")
    def _within_amount(self) -> Self:
        allocated = _allocated_in(self.amount.currency, self.allocations)
        if allocated > self.amount.amount:
            raise ValueError(
                f"allocations ({allocated}) exceed the amount reversed ({self.amount.amount})"
            )
        if self.credit_voided is not None:
            _check_currency("credit_voided", self.credit_voided, self.amount.currency)
        return self
