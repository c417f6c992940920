"""What dunning-svc publishes: commands on ``dunning.commands``, facts on ``dunning.events``."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from dunning_events import topics
from dunning_events.envelope import Event
from dunning_events.invoices import Contact, TimeZone
from dunning_events.money import Currency, NonNegativeMoney, PositiveMoney

Channel = Literal["email", "sms", "webhook", "task"]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoticeInvoice(_Part):
    """An invoice as a notice lists it."""

    invoice_id: str = Field(min_length=1, max_length=100)
    number: str | None = Field(default=None, max_length=100, description="As printed, if any")
    amount_due: PositiveMoney
    balance: NonNegativeMoney
    due_date: date
    days_past_due: int = Field(description="Negative before the due date")


class NotificationRequested(Event):
    """Command to notify-svc: render and send one consolidated notice for an account."""

    event_type: ClassVar[str] = "NotificationRequested"
    topic: ClassVar[str] = topics.DUNNING_COMMANDS

    notification_id: str = Field(min_length=1, max_length=100)
    account_name: str = Field(min_length=1, max_length=200)
    stage: str = Field(min_length=1, max_length=50)
    channel: Channel
    template: str = Field(min_length=1, max_length=100)
    locale: str = Field(default="en", min_length=2, max_length=20)
    timezone: TimeZone = "UTC"
    recipient: Contact
    invoices: list[NoticeInvoice] = Field(default_factory=list)
    total_overdue: list[NonNegativeMoney] = Field(
        default_factory=list, description="Overdue balance, one entry per currency"
    )
    next_step: str | None = Field(default=None, max_length=500)
    not_before: AwareDatetime | None = Field(
        default=None, description="Send no earlier (business hours of the account)"
    )


class DunningStageChanged(Event):
    """An account moved between stages of its escalation policy."""

    event_type: ClassVar[str] = "DunningStageChanged"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    from_stage: str = Field(min_length=1, max_length=50)
    to_stage: str = Field(min_length=1, max_length=50)
    reason: str = Field(min_length=1, max_length=1000)
    segment: str = Field(min_length=1, max_length=50)


class CollectionsHandoffRequested(Event):
    """The last resort: hand the account to a collection agency."""

    event_type: ClassVar[str] = "CollectionsHandoffRequested"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    overdue_balance: list[PositiveMoney] = Field(min_length=1, description="Per currency")
    oldest_days_past_due: int = Field(ge=0)
    reason: str = Field(min_length=1, max_length=1000)


class PromiseToPayRecorded(Event):
    """The customer promised to pay an amount by a date; escalation pauses until then."""

    event_type: ClassVar[str] = "PromiseToPayRecorded"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    promise_id: str = Field(min_length=1, max_length=100)
    amount: PositiveMoney
    promised_date: date
    recorded_by: str = Field(min_length=1, max_length=200)


class PromiseToPayBroken(Event):
    """The promised date passed without the promised amount; escalation resumes."""

    event_type: ClassVar[str] = "PromiseToPayBroken"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    promise_id: str = Field(min_length=1, max_length=100)
    amount: PositiveMoney
    promised_date: date
    amount_received: NonNegativeMoney


class Installment(_Part):
    """One installment of a payment plan."""

    due_date: date
    amount: PositiveMoney


class PaymentPlanAgreed(Event):
    """A payment plan replaces the escalation ladder while its installments are met."""

    event_type: ClassVar[str] = "PaymentPlanAgreed"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    plan_id: str = Field(min_length=1, max_length=100)
    currency: Currency
    installments: list[Installment] = Field(min_length=1)
