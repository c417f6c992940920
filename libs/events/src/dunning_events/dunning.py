"""What dunning-svc publishes: commands on ``dunning.commands``, facts on ``dunning.events``."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator

from dunning_events import topics
from dunning_events.common import (
    Channel,
    Contact,
    Day,
    Identifier,
    Instant,
    Locale,
    Part,
    Segment,
    Stage,
    TimeZone,
)
from dunning_events.envelope import Event
from dunning_events.money import (
    BalancesByCurrency,
    Currency,
    NonNegativeMoney,
    PositiveMoney,
    distinct_currencies,
)

__all__ = [
    "AccountWrittenOff",
    "Channel",
    "CollectionsHandoffRequested",
    "CreditHoldReleased",
    "CreditHoldRequested",
    "DunningStageChanged",
    "Installment",
    "InstallmentMissed",
    "LateFeeAssessed",
    "NoticeInvoice",
    "NotificationRequested",
    "PaymentPlanAgreed",
    "PromiseToPayBroken",
    "PromiseToPayKept",
    "PromiseToPayRecorded",
]


class NoticeInvoice(Part):
    """An invoice as a notice lists it."""

    invoice_id: Identifier = Field(description="The invoice's id.")
    number: str | None = Field(
        default=None, max_length=100, description="The number printed on it, if it differs."
    )
    amount_due: PositiveMoney = Field(description="The invoice total.")
    balance: NonNegativeMoney = Field(description="What is still owed on it.")
    due_date: Day = Field(description="Its due date.")
    days_past_due: int = Field(description="Days past due_date; negative before the due date.")

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        if self.balance.currency != self.amount_due.currency:
            raise ValueError("balance and amount_due must be in the same currency")
        return self


class NotificationRequested(Event):
    """Command to notify-svc: render and send one consolidated notice for an account.

    Carries everything the message needs (recipient, invoices, totals), so notify-svc
    keeps no copy of invoices. notify-svc answers with NotificationSent or
    NotificationFailed carrying the same notification_id.
    """

    event_type: ClassVar[str] = "NotificationRequested"
    topic: ClassVar[str] = topics.DUNNING_COMMANDS

    notification_id: Identifier = Field(
        description=(
            "Id of this notice and its idempotency key: one per contact moment and channel, "
            "the same on every redelivery, so notify-svc sends it at most once. Repeated on "
            "NotificationSent/NotificationFailed/NotificationSuppressed."
        )
    )
    account_name: str = Field(
        min_length=1, max_length=200, description="Customer's name, as the notice addresses it."
    )
    stage: Stage = Field(description="The policy stage that asked for the notice.")
    stage_sequence: int = Field(
        ge=0,
        description=(
            "The account's stage-change sequence (DunningStageChanged.sequence) when the "
            "notice was requested; a later change back to current makes it obsolete."
        ),
    )
    channel: Channel = Field(description="How to send it.")
    template: str = Field(
        min_length=1, max_length=100, description="Template name, e.g. overdue_1 or thank_you."
    )
    locale: Locale = "en"
    timezone: TimeZone = "UTC"
    recipient: Contact = Field(description="Who to send it to.")
    cc: list[Contact] = Field(
        default_factory=list,
        max_length=5,
        description="Who gets a copy, e.g. the account's escalation contact from overdue_3.",
    )
    invoices: list[NoticeInvoice] = Field(
        default_factory=list,
        max_length=1000,
        description="Every invoice the notice lists; empty for e.g. a thank-you.",
    )
    total_overdue: BalancesByCurrency = Field(
        default_factory=list, description="Overdue balance of the account, one entry per currency."
    )
    total_open: BalancesByCurrency = Field(
        default_factory=list,
        description="Open balance of the account (overdue or not), one entry per currency.",
    )
    fee: PositiveMoney | None = Field(
        default=None, description="Late fee assessed at this step, if the notice states one."
    )
    next_step: str | None = Field(
        default=None,
        max_length=500,
        description="What happens next if nothing is paid, in English, e.g. for subscribers.",
    )
    next_stage: Stage | None = Field(
        default=None,
        description=(
            "The stage that follows if nothing is paid (e.g. final_notice; collections for a "
            "handoff), so notify-svc can name the next step in the notice's own language."
        ),
    )
    next_step_in_days: int | None = Field(
        default=None, ge=0, le=3650, description="Days until next_stage, by the policy."
    )
    not_before: Instant | None = Field(
        default=None,
        description="Send no earlier than this (business hours of the account); null: now.",
    )
    contact_cap_days: int = Field(
        default=0,
        ge=0,
        le=60,
        description=(
            "The policy's contact cap: notify-svc sends no notice of the account's other "
            "contact moments (another stage_sequence) within this many days of one sent; "
            "0: no cap (e.g. a thank-you)."
        ),
    )


class DunningStageChanged(Event):
    """An account moved from one stage of its escalation policy to another."""

    event_type: ClassVar[str] = "DunningStageChanged"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    from_stage: Stage = Field(description="The stage before, e.g. reminder.")
    to_stage: Stage = Field(description="The stage now, e.g. overdue_1; current when paid up.")
    reason: str = Field(
        min_length=1, max_length=1000, description="Why, e.g. INV-1001 is 1 day past due."
    )
    segment: Segment = Field(description="Policy segment of the account.")
    sequence: int = Field(
        ge=1,
        description=(
            "Counts the account's stage changes, 1 for the first; a NotificationRequested "
            "with a lower stage_sequence was requested before this change."
        ),
    )

    @model_validator(mode="after")
    def _moved(self) -> Self:
        if self.from_stage == self.to_stage:
            raise ValueError("from_stage and to_stage must differ")
        return self


class CollectionsHandoffRequested(Event):
    """The last resort: hand the account to a collection agency."""

    event_type: ClassVar[str] = "CollectionsHandoffRequested"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    overdue_balance: list[PositiveMoney] = Field(
        min_length=1, description="Overdue balance of the account, one entry per currency."
    )
    oldest_days_past_due: int = Field(ge=0, description="Days past due of the oldest invoice.")
    reason: str = Field(min_length=1, max_length=1000, description="Why the account is handed off.")

    @model_validator(mode="after")
    def _per_currency(self) -> Self:
        distinct_currencies(self.overdue_balance)
        return self


class PromiseToPayRecorded(Event):
    """The customer promised to pay an amount by a date; escalation pauses until then."""

    event_type: ClassVar[str] = "PromiseToPayRecorded"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    promise_id: Identifier = Field(description="Id of the promise.")
    amount: PositiveMoney = Field(description="The amount promised.")
    promised_date: Day = Field(description="The date it is promised by.")
    recorded_by: str = Field(
        min_length=1, max_length=200, description="Who recorded it, e.g. collector:jo or api."
    )


class PromiseToPayBroken(Event):
    """The promised date passed without the promised amount; escalation resumes."""

    event_type: ClassVar[str] = "PromiseToPayBroken"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    promise_id: Identifier = Field(description="The promise broken.")
    amount: PositiveMoney = Field(description="The amount that was promised.")
    promised_date: Day = Field(description="The date it was promised by.")
    amount_received: NonNegativeMoney = Field(
        description="What arrived by then; less than amount, same currency."
    )

    @model_validator(mode="after")
    def _short(self) -> Self:
        if self.amount_received.currency != self.amount.currency:
            raise ValueError("amount_received and amount must be in the same currency")
        if self.amount_received.amount >= self.amount.amount:
            raise ValueError("a promise with the full amount received is kept, not broken")
        return self


class Installment(Part):
    """One installment of a payment plan."""

    due_date: Day = Field(description="When the installment is due.")
    amount: PositiveMoney = Field(description="How much is due then.")


class PaymentPlanAgreed(Event):
    """A payment plan replaces the escalation ladder while its installments are met."""

    event_type: ClassVar[str] = "PaymentPlanAgreed"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    plan_id: Identifier = Field(description="Id of the plan.")
    currency: Currency = Field(description="Currency of every installment.")
    installments: list[Installment] = Field(
        min_length=1, max_length=120, description="The installments, by due date."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for i, installment in enumerate(self.installments):
            if installment.amount.currency != self.currency:
                raise ValueError(
                    f"installments[{i}].amount is in {installment.amount.currency}, "
                    f"but the plan is in {self.currency}"
                )
            if i and installment.due_date <= self.installments[i - 1].due_date:
                raise ValueError("installments must be in order of due_date, one per date")
        return self


class LateFeeAssessed(Event):
    """A policy step charged a late fee. invoice-svc turns it into a fee invoice on the
    account (kind ``fee``, due at once, id ``fee_invoice_id``), so the fee is chased,
    paid and reported like any other invoice."""

    event_type: ClassVar[str] = "LateFeeAssessed"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    fee_invoice_id: Identifier = Field(
        description="Id of the fee invoice to create; the same on every redelivery."
    )
    invoice_id: Identifier = Field(
        description="The overdue invoice whose terms (or the policy) set the fee."
    )
    amount: PositiveMoney = Field(description="The fee.")
    stage: Stage = Field(description="The policy stage that charged it, e.g. final_notice.")
    assessed_on: Day = Field(description="The date it was charged, in the account's time zone.")
    reason: str = Field(
        min_length=1, max_length=1000, description="How it was computed, for the timeline."
    )
    account_name: str = Field(
        min_length=1, max_length=200, description="Customer's name, for the fee invoice."
    )
    contact: Contact = Field(description="Who the fee invoice goes to.")
    segment: Segment = Field(default="standard", description="Policy segment of the account.")
    timezone: TimeZone = "UTC"
    locale: Locale = "en"


class CreditHoldRequested(Event):
    """Order systems should stop shipping to the account until it is current again."""

    event_type: ClassVar[str] = "CreditHoldRequested"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    stage: Stage = Field(description="The stage that asked for the hold.")
    overdue_balance: list[PositiveMoney] = Field(
        min_length=1, description="Overdue balance of the account, one entry per currency."
    )
    reason: str = Field(min_length=1, max_length=1000, description="Why the hold is requested.")

    @model_validator(mode="after")
    def _per_currency(self) -> Self:
        distinct_currencies(self.overdue_balance)
        return self


class CreditHoldReleased(Event):
    """The account is current again (or written off): order systems may ship again."""

    event_type: ClassVar[str] = "CreditHoldReleased"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    reason: str = Field(min_length=1, max_length=1000, description="Why the hold ends.")


class PromiseToPayKept(Event):
    """The promised amount arrived by the promised date (plus grace); the pause ends."""

    event_type: ClassVar[str] = "PromiseToPayKept"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    promise_id: Identifier = Field(description="The promise kept.")
    amount: PositiveMoney = Field(description="The amount that was promised.")
    promised_date: Day = Field(description="The date it was promised by.")
    amount_received: PositiveMoney = Field(
        description="What arrived since the promise; at least amount, same currency."
    )

    @model_validator(mode="after")
    def _enough(self) -> Self:
        if self.amount_received.currency != self.amount.currency:
            raise ValueError("amount_received and amount must be in the same currency")
        if self.amount_received.amount < self.amount.amount:
            raise ValueError("a promise with less than the amount received is broken, not kept")
        return self


class InstallmentMissed(Event):
    """An installment of a payment plan was not met by its due date (plus grace); the
    plan ends and the escalation ladder resumes."""

    event_type: ClassVar[str] = "InstallmentMissed"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    plan_id: Identifier = Field(description="The plan.")
    due_date: Day = Field(description="Due date of the installment missed.")
    amount_due: PositiveMoney = Field(
        description="What the plan required by that date in total (installments so far)."
    )
    amount_received: NonNegativeMoney = Field(
        description="What arrived since the plan was agreed; less than amount_due."
    )

    @model_validator(mode="after")
    def _short(self) -> Self:
        if self.amount_received.currency != self.amount_due.currency:
            raise ValueError("amount_received and amount_due must be in the same currency")
        if self.amount_received.amount >= self.amount_due.amount:
            raise ValueError("an installment with the full amount received is met, not missed")
        return self


class AccountWrittenOff(Event):
    """The seller gave up on the account's open balance; nothing more is sent."""

    event_type: ClassVar[str] = "AccountWrittenOff"
    topic: ClassVar[str] = topics.DUNNING_EVENTS

    written_off: list[PositiveMoney] = Field(
        min_length=1, description="The open balance written off, one entry per currency."
    )
    reason: str = Field(min_length=1, max_length=1000, description="Why, as the user gave it.")
    written_off_by: str = Field(
        min_length=1, max_length=200, description="Who decided it, e.g. api or collector:jo."
    )

    @model_validator(mode="after")
    def _per_currency(self) -> Self:
        distinct_currencies(self.written_off)
        return self
