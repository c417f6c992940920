"""What notify-svc publishes on the ``notifications`` topic: delivery results of the
notices dunning-svc requested, and the outcomes of collectors' call tasks."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from dunning_events import topics
from dunning_events.common import BoundedDay, Channel, FreeText, Identifier, Instant
from dunning_events.envelope import Event
from dunning_events.money import PositiveMoney

__all__ = [
    "CollectorTaskCompleted",
    "NotificationFailed",
    "NotificationSent",
    "NotificationSuppressed",
    "SuppressionReason",
    "TaskOutcome",
]


class NotificationSent(Event):
    """A notice left the platform: accepted by the SMTP server, the SMS gateway or the
    webhook endpoint, or (channel task) opened as a collector's task."""

    event_type: ClassVar[str] = "NotificationSent"
    topic: ClassVar[str] = topics.NOTIFICATIONS

    notification_id: Identifier = Field(description="The NotificationRequested it answers.")
    channel: Channel = Field(description="How it was sent.")
    sent_at: Instant = Field(description="When the provider accepted it.")
    provider_message_id: str | None = Field(
        default=None,
        max_length=500,
        description="The provider's id for the message (e.g. SMTP Message-ID), if any.",
    )


class NotificationFailed(Event):
    """A notice could not be delivered. permanent: retrying will not help (e.g. no email
    address); otherwise notify-svc gave up after its retries."""

    event_type: ClassVar[str] = "NotificationFailed"
    topic: ClassVar[str] = topics.NOTIFICATIONS

    notification_id: Identifier = Field(description="The NotificationRequested it answers.")
    channel: Channel = Field(description="How sending was attempted.")
    error: str = Field(min_length=1, max_length=2000, description="What went wrong, for people.")
    attempts: int = Field(ge=1, description="How many times sending was tried.")
    permanent: bool = Field(description="True when retrying cannot succeed.")


#: Why a requested notice was not sent: the contact opted out of the channel; the
#: recipient has no address for it (no email, no phone, no webhook endpoint); or
#: dunning-svc moved the account back to ``current`` after requesting it.
SuppressionReason = Literal["opted_out", "no_address", "obsolete"]


class NotificationSuppressed(Event):
    """A requested notice was deliberately not sent; nothing left the platform."""

    event_type: ClassVar[str] = "NotificationSuppressed"
    topic: ClassVar[str] = topics.NOTIFICATIONS

    notification_id: Identifier = Field(description="The NotificationRequested it answers.")
    channel: Channel = Field(description="The channel it was requested for.")
    reason: SuppressionReason = Field(description="Why it was not sent.")
    detail: str = Field(
        min_length=1, max_length=1000, description="The reason for people, e.g. which address."
    )


#: What came of a collector's call: the customer promised to pay (amount and date),
#: disputes the debt, did not answer, was the wrong contact, or says it has paid.
TaskOutcome = Literal["promised", "disputed", "no_answer", "wrong_contact", "paid"]


class CollectorTaskCompleted(Event):
    """A collector completed a call task; dunning-svc records it on the account's
    timeline, and a ``promised`` outcome as a promise to pay."""

    event_type: ClassVar[str] = "CollectorTaskCompleted"
    topic: ClassVar[str] = topics.NOTIFICATIONS

    task_id: Identifier = Field(description="The task completed.")
    notification_id: Identifier = Field(description="The NotificationRequested that opened it.")
    outcome: TaskOutcome = Field(description="What came of the call.")
    promised_amount: PositiveMoney | None = Field(
        default=None, description="With outcome promised: the amount promised."
    )
    promised_date: BoundedDay | None = Field(
        default=None, description="With outcome promised: the date it is promised by."
    )
    note: FreeText = Field(default="", max_length=2000, description="The collector's note.")
    completed_by: str = Field(
        min_length=1, max_length=200, description="Who completed it, e.g. collector:jo or api."
    )
    completed_at: Instant = Field(description="When it was completed.")

    @model_validator(mode="after")
    def _promise_complete(self) -> Self:
        promised = self.promised_amount is not None or self.promised_date is not None
        if self.outcome == "promised":
            if self.promised_amount is None or self.promised_date is None:
                raise ValueError("outcome promised needs promised_amount and promised_date")
        elif promised:
            raise ValueError("promised_amount and promised_date belong to outcome promised")
        return self
