"""notify-svc's HTTP bodies."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dunning_events.common import BoundedDay, FreeText
from dunning_events.money import Currency, PositiveAmount, check_money
from dunning_events.notifications import TaskOutcome
from notify_svc.domain import TaskCompletion
from notify_svc.rendering import check_payment_link

ChannelName = Literal["email", "sms", "webhook", "task"]
OptOutChannel = Literal["email", "sms", "task"]
NotificationStatus = Literal["pending", "sent", "failed", "suppressed"]


class _Body(BaseModel):
    # Unknown fields are an error: a typo must not silently drop data.
    model_config = ConfigDict(extra="forbid", frozen=True)


class NotificationOut(BaseModel):
    """A notice as the list shows it."""

    notification_id: str
    account_id: str
    account_name: str
    stage: str
    stage_sequence: int
    channel: ChannelName
    template: str
    locale: str
    status: NotificationStatus
    to: str | None = Field(description="Email address, phone number or webhook endpoint.")
    subject: str | None
    reason: Literal["opted_out", "no_address", "obsolete"] | None = Field(
        description="Why it was suppressed."
    )
    error: str | None = Field(
        description="Why it failed or was suppressed; while pending, the last temporary error."
    )
    attempts: int
    possible_duplicate: bool = Field(
        description=(
            "A send was interrupted before its outcome was recorded and the notice was sent "
            "again: the recipient may have it twice (same Message-ID)."
        )
    )
    provider_message_id: str | None
    due_at: datetime = Field(description="Not sent before (the request's not_before).")
    created_at: datetime
    sent_at: datetime | None


class NotificationDetail(NotificationOut):
    """A notice with what it says."""

    cc: list[str]
    message_id: str
    body_text: str | None
    body_html: str | None
    body_sms: str | None
    permanent: bool = Field(description="A failure retrying cannot mend.")
    request: dict[str, Any] = Field(description="The NotificationRequested payload.")


class NotificationPage(BaseModel):
    """A page of notices; ``next_cursor`` is null on the last page."""

    items: list[NotificationOut]
    next_cursor: str | None


class TaskOut(BaseModel):
    """A collector's call task."""

    task_id: str
    notification_id: str
    account_id: str
    account_name: str
    stage: str
    contact: dict[str, Any]
    subject: str
    body_text: str
    total_overdue: list[dict[str, Any]]
    status: Literal["open", "completed"]
    outcome: TaskOutcome | None
    note: str | None
    promised_amount: Decimal | None
    promised_currency: str | None
    promised_date: date | None
    completed_by: str | None
    created_at: datetime
    completed_at: datetime | None


class TaskPage(BaseModel):
    """A page of tasks; ``next_cursor`` is null on the last page."""

    items: list[TaskOut]
    next_cursor: str | None


class TaskCompleteIn(_Body):
    """What came of the call; ``promised`` needs ``amount``, ``currency`` and
    ``promised_date``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "outcome": "promised",
                    "amount": "1250.00",
                    "currency": "EUR",
                    "promised_date": "2026-03-31",
                    "note": "Will pay by month end.",
                    "completed_by": "collector:jo",
                }
            ]
        },
    )

    outcome: TaskOutcome
    note: FreeText = Field(default="", max_length=2000)
    amount: PositiveAmount | None = None
    currency: Currency | None = None
    promised_date: BoundedDay | None = None
    completed_by: FreeText = Field(default="api", min_length=1, max_length=200)

    @model_validator(mode="after")
    def _promise(self) -> Self:
        given = [f for f in ("amount", "currency", "promised_date") if getattr(self, f) is not None]
        if self.outcome == "promised":
            missing = [f for f in ("amount", "currency", "promised_date") if f not in given]
            if missing:
                raise ValueError(f"outcome promised needs {', '.join(missing)}")
            assert self.amount is not None and self.currency is not None
            check_money(self.amount, self.currency)
        elif given:
            raise ValueError(f"{', '.join(given)} belong to outcome promised only")
        return self

    def completion(self) -> TaskCompletion:
        """The completion as the use case takes it."""
        return TaskCompletion(
            outcome=self.outcome,
            note=self.note,
            completed_by=self.completed_by,
            amount=self.amount,
            currency=self.currency,
            promised_date=self.promised_date,
        )


class TemplateIn(_Body):
    """Overridden parts of a template; parts left out stay as shipped. A message
    template (``overdue_1.de``) has ``subject``, ``intro`` and ``closing``; the layout
    (``layout.de``) has ``text``, ``html`` and ``sms``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "subject": "Reminder: {{ invoice_count }} open invoices",
                    "intro": "Our records show the invoices below as unpaid.",
                }
            ]
        },
    )

    subject: str | None = Field(default=None, max_length=20_000)
    intro: str | None = Field(default=None, max_length=20_000)
    closing: str | None = Field(default=None, max_length=20_000)
    text: str | None = Field(default=None, max_length=20_000)
    html: str | None = Field(default=None, max_length=20_000)
    sms: str | None = Field(default=None, max_length=20_000)

    def parts(self) -> dict[str, str]:
        """The parts given."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class TemplatePreview(BaseModel):
    """The template rendered with a sample notice."""

    subject: str
    text: str
    html: str
    sms: str


class TemplateOut(BaseModel):
    """A template as it renders for the tenant."""

    key: str
    parts: dict[str, str]
    overridden: list[str] = Field(description="The parts the tenant overrides.")
    preview: TemplatePreview


class TemplateList(BaseModel):
    """Every template key and the parts the tenant overrides in each."""

    items: list[dict[str, Any]]


class ProfileIn(_Body):
    """How the tenant's notices sign off and how customers pay."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "company_name": "Acme Tools GmbH",
                    "email": "receivables@acme.example",
                    "phone": "+49 30 1234567",
                    "payment_instructions": "IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX",
                    "payment_link": "https://pay.acme.example/{account_id}?invoices={invoice_ids}",
                    "webhook_url": "https://erp.acme.example/hooks/dunning",
                }
            ]
        },
    )

    company_name: FreeText = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 ()./-]{4,31}$")
    payment_instructions: FreeText = Field(
        default="Please transfer the amount to the bank account shown on the invoice, "
        "quoting the invoice number.",
        min_length=1,
        max_length=2000,
    )
    payment_link: str | None = Field(
        default=None,
        max_length=500,
        pattern=r"^https?://[^\s]+$",
        description="URL template; {tenant}, {account_id} and {invoice_ids} are filled in.",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=500,
        pattern=r"^https?://[^\s]+$",
        description="Where webhook notices are POSTed (signed with Dunning-Signature).",
    )

    @field_validator("payment_link")
    @classmethod
    def _link(cls, value: str | None) -> str | None:
        return check_payment_link(value) if value else value


class ProfileOut(ProfileIn):
    """The tenant's profile (the defaults until one is stored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    updated_at: datetime | None


class ContactIn(_Body):
    """Which channels an opt-out or opt-in concerns; all that reach the address when
    left out (email for an email address; sms and task for a phone number)."""

    channels: list[OptOutChannel] | None = Field(default=None, min_length=1, max_length=3)
    reason: FreeText = Field(default="", max_length=500)


class OptOut(BaseModel):
    """One channel a contact opted out of."""

    channel: OptOutChannel
    reason: str
    since: datetime


class ContactOut(BaseModel):
    """A contact's opt-outs."""

    address: str = Field(description="Normalized: lower-case email, or + and digits.")
    opted_out: list[OptOut]
