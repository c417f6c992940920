"""Delivery results published by notify-svc on the ``notifications`` topic."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AwareDatetime, Field

from dunning_events import topics
from dunning_events.dunning import Channel
from dunning_events.envelope import Event


class NotificationSent(Event):
    """A notice left the platform (accepted by the SMTP server, SMS or webhook endpoint)."""

    event_type: ClassVar[str] = "NotificationSent"
    topic: ClassVar[str] = topics.NOTIFICATIONS

    notification_id: str = Field(min_length=1, max_length=100)
    channel: Channel
    sent_at: AwareDatetime
    provider_message_id: str | None = Field(default=None, max_length=500)


class NotificationFailed(Event):
    """A notice could not be delivered; ``permanent`` means retrying will not help."""

    event_type: ClassVar[str] = "NotificationFailed"
    topic: ClassVar[str] = topics.NOTIFICATIONS

    notification_id: str = Field(min_length=1, max_length=100)
    channel: Channel
    error: str = Field(min_length=1, max_length=2000)
    attempts: int = Field(ge=1)
    permanent: bool
