"""Delivery results published by notify-svc on the ``notifications`` topic."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from dunning_events import topics
from dunning_events.common import Channel, Identifier, Instant
from dunning_events.envelope import Event

__all__ = ["NotificationFailed", "NotificationSent"]


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
