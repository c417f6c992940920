"""dunning-svc's HTTP bodies: what collectors post and what they read back."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dunning_events import Contact, Money
from dunning_events.common import BoundedDay, FreeText, Identifier
from dunning_events.money import Currency, PositiveAmount, check_money
from dunning_svc.policy import Policy


class _Body(BaseModel):
    # Unknown fields are an error: a typo must not silently drop data.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


def _fits(amount: Decimal, currency: str, field: str) -> None:
    try:
        check_money(amount, currency)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


class PromiseIn(_Body):
    """A promise to pay, as a collector records it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"amount": "500.00", "currency": "EUR", "promised_date": "2026-12-15"}]
        }
    )

    promise_id: Identifier | None = Field(
        default=None, description="Your id for the promise; one is made up when absent."
    )
    amount: PositiveAmount
    currency: Currency
    promised_date: BoundedDay

    @model_validator(mode="after")
    def _places(self) -> Self:
        _fits(self.amount, self.currency, "amount")
        return self


class InstallmentIn(_Body):
    """One installment of a payment plan."""

    due_date: BoundedDay
    amount: PositiveAmount


class PlanIn(_Body):
    """A payment plan: installments in order of due date, one currency."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "currency": "EUR",
                    "installments": [
                        {"due_date": "2026-12-15", "amount": "600.00"},
                        {"due_date": "2027-01-15", "amount": "650.00"},
                    ],
                }
            ]
        }
    )

    plan_id: Identifier | None = None
    currency: Currency
    installments: list[InstallmentIn] = Field(min_length=1, max_length=120)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        for i, item in enumerate(self.installments):
            _fits(item.amount, self.currency, f"installments[{i}].amount")
            if i and item.due_date <= self.installments[i - 1].due_date:
                raise ValueError("installments must be in order of due_date, one per date")
        return self


class PauseIn(_Body):
    """Pause escalation by hand."""

    reason: FreeText = Field(min_length=1, max_length=1000)
    until: BoundedDay | None = Field(default=None, description="Resume on this date.")


class ResumeIn(_Body):
    """End a pause, a promise or a plan by hand."""

    note: FreeText | None = Field(default=None, max_length=1000)


class WriteOffIn(_Body):
    """Write the account's open balance off."""

    reason: FreeText = Field(min_length=1, max_length=1000)


class ApprovalIn(_Body):
    """Approve the handoff waiting on the account."""

    note: FreeText | None = Field(default=None, max_length=1000)


class ContactsIn(_Body):
    """Who hears about the account. ``contact`` replaces the invoices' contact for
    notices; ``escalation_contact`` gets them from the policy's escalation stage
    (null removes it)."""

    contact: Contact | None = None
    escalation_contact: Contact | None = None


class PolicyIn(Policy):
    """A policy to publish (``segment`` and ``version`` are taken from the URL and the
    service); ``apply_to_running`` moves accounts already in dunning onto it too."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "steps": [
                        {"stage": "reminder", "days_before_due": 3, "channels": ["email"]},
                        {"stage": "overdue_1", "days_past_due": 1, "channels": ["email"]},
                        {
                            "stage": "collections",
                            "days_past_due": 30,
                            "channels": ["email"],
                            "actions": ["handoff"],
                            "min_balance": "500.00",
                        },
                    ],
                    "escalation_contact": {"from_stage": "collections"},
                }
            ]
        },
    )

    segment: str = Field(default="", max_length=50)
    apply_to_running: bool = False


# -- responses --------------------------------------------------------------------------


class NoticeInvoiceOut(BaseModel):
    """An open invoice of the account."""

    invoice_id: str
    currency: str
    amount_due: Decimal
    balance: Decimal
    disputed: Decimal
    due_date: date | None
    days_past_due: int
    kind: str


class PromiseOut(BaseModel):
    """The promise to pay the account is keeping to, as a collector recorded it."""

    promise_id: str
    amount: Money = Field(description="What was promised.")
    promised_date: date
    recorded_at: datetime
    amount_received: Money = Field(
        description="Paid in the promise's currency since it was recorded; the promise is "
        "kept once this reaches the amount."
    )


class InstallmentOut(BaseModel):
    """One installment of the running payment plan."""

    due_date: date
    amount: Money
    paid: bool = Field(
        description="Everything due up to and including this installment has arrived "
        "(payments since the plan was agreed count oldest installment first)."
    )


class PlanOut(BaseModel):
    """The payment plan that replaces the ladder while its installments are met."""

    plan_id: str
    currency: str
    agreed_at: datetime
    installments: list[InstallmentOut]
    amount_received: Money = Field(description="Paid in the plan's currency since it was agreed.")


class AccountOut(BaseModel):
    """Where an account stands."""

    account_id: str
    account_name: str
    segment: str
    stage: str
    policy_version: int | None = Field(
        description="The policy version its current dunning cycle runs on (null: current)."
    )
    open_balance: list[Money]
    overdue_balance: list[Money]
    disputed_balance: list[Money]
    oldest_days_past_due: int
    paused: bool
    pause_reason: str | None
    promise: PromiseOut | None
    plan: PlanOut | None
    credit_hold: bool
    handoff: Literal["awaiting_approval", "requested"] | None
    written_off: bool
    next_action_at: datetime | None
    last_contacted_at: datetime | None
    last_sent_at: datetime | None
    contact: Contact | None
    escalation_contact: Contact | None
    invoices: list[NoticeInvoiceOut]


class WorklistItem(BaseModel):
    """One line of the worklist."""

    account_id: str
    account_name: str
    segment: str
    stage: str
    overdue_balance: list[Money]
    oldest_days_past_due: int
    paused: bool
    next_action_at: datetime | None


class WorklistPage(BaseModel):
    """A page of the worklist; ``next_cursor`` is null on the last page."""

    items: list[WorklistItem]
    next_cursor: str | None


class TimelineEntry(BaseModel):
    """One entry of an account's timeline."""

    at: datetime
    kind: Literal["input", "action", "decision", "stage", "command"]
    summary: str
    actor: str | None
    policy_version: int | None
    data: dict[str, Any] | None


class TimelinePage(BaseModel):
    """A page of the timeline, oldest first."""

    items: list[TimelineEntry]
    next_cursor: str | None


class PolicyOut(BaseModel):
    """A published policy version."""

    segment: str
    version: int
    apply_to_running: bool
    created_by: str
    created_at: datetime | None
    policy: dict[str, Any]


class PolicyVersions(BaseModel):
    """Every version of a segment's policy, newest first."""

    segment: str
    versions: list[PolicyOut]


class AgingBucket(BaseModel):
    """Balances of one currency by age."""

    currency: str
    current: Decimal
    days_1_30: Decimal
    days_31_60: Decimal
    days_61_90: Decimal
    days_over_90: Decimal
    total: Decimal


class AgingAccount(BaseModel):
    """One account's aging."""

    account_id: str
    buckets: list[AgingBucket]


class AgingReport(BaseModel):
    """Open balances by age as of a date."""

    as_of: date
    totals: list[AgingBucket]
    accounts: list[AgingAccount]


class DsoFigure(BaseModel):
    """DSO of one currency."""

    currency: str
    receivables: Decimal
    credit_sales: Decimal
    days: int
    dso: Decimal | None


class DsoReport(BaseModel):
    """Days sales outstanding over a period: receivables at its end / credit sales in it
    x its days."""

    period_from: date
    period_to: date
    figures: list[DsoFigure]
