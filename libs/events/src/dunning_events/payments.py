"""Events published by payment-svc on the ``payments`` topic."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from dunning_events import topics
from dunning_events.envelope import Event
from dunning_events.money import NonNegativeMoney, PositiveMoney


class Allocation(BaseModel):
    """The part of a payment applied to one invoice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    invoice_id: str = Field(min_length=1, max_length=100)
    amount: PositiveMoney


class PaymentReceived(Event):
    """Money arrived; ``allocations`` say which invoices it paid, ``unapplied`` is credit."""

    event_type: ClassVar[str] = "PaymentReceived"
    topic: ClassVar[str] = topics.PAYMENTS

    payment_id: str = Field(min_length=1, max_length=100)
    amount: PositiveMoney
    received_at: AwareDatetime
    method: str = Field(min_length=1, max_length=50, description="e.g. bank_transfer, card")
    reference: str | None = Field(default=None, max_length=200)
    allocations: list[Allocation] = Field(default_factory=list)
    unapplied: NonNegativeMoney


class PaymentReversed(Event):
    """A payment bounced or was charged back; the invoices it paid reopen."""

    event_type: ClassVar[str] = "PaymentReversed"
    topic: ClassVar[str] = topics.PAYMENTS

    payment_id: str = Field(min_length=1, max_length=100)
    amount: PositiveMoney
    reason: str = Field(default="", max_length=1000)
    reversed_at: AwareDatetime
    allocations: list[Allocation] = Field(default_factory=list, description="Undone allocations")
