"""Every published event type, by its CloudEvents ``type``.

Adding an event means adding its class to ``EVENT_CLASSES``; decoders, the
generated schemas and the AsyncAPI document all read this list.
"""

from __future__ import annotations

import builtins

from dunning_events import topics
from dunning_events.dunning import (
    AccountWrittenOff,
    CollectionsHandoffRequested,
    CreditHoldReleased,
    CreditHoldRequested,
    DunningStageChanged,
    InstallmentMissed,
    LateFeeAssessed,
    NotificationRequested,
    PaymentPlanAgreed,
    PromiseToPayBroken,
    PromiseToPayKept,
    PromiseToPayRecorded,
)
from dunning_events.envelope import Event
from dunning_events.invoices import (
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceSettled,
    InvoiceVoided,
)
from dunning_events.keys import ApiKeyRecorded
from dunning_events.notifications import (
    CollectorTaskCompleted,
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
)
from dunning_events.payments import CreditApplied, PaymentReceived, PaymentReversed

__all__ = ["EVENT_CLASSES", "EVENT_TYPES", "UnknownEventTypeError", "event_class", "events_on"]

#: Every event class, grouped by topic in the order of ``topics.ALL_TOPICS``.
EVENT_CLASSES: tuple[type[Event], ...] = (
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceVoided,
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceSettled,
    PaymentReceived,
    PaymentReversed,
    CreditApplied,
    NotificationRequested,
    DunningStageChanged,
    CollectionsHandoffRequested,
    PromiseToPayRecorded,
    PromiseToPayBroken,
    PaymentPlanAgreed,
    LateFeeAssessed,
    CreditHoldRequested,
    CreditHoldReleased,
    PromiseToPayKept,
    InstallmentMissed,
    AccountWrittenOff,
    NotificationSent,
    NotificationFailed,
    NotificationSuppressed,
    CollectorTaskCompleted,
    ApiKeyRecorded,
)


class UnknownEventTypeError(KeyError):
    """A CloudEvents ``type`` that no event class has."""

    def __str__(self) -> str:
        # KeyError's own str() is the repr of its argument; say what is wrong instead.
        return f"unknown event type {self.args[0]!r}"


def _index(classes: tuple[type[Event], ...]) -> dict[str, type[Event]]:
    """``classes`` by CloudEvents type, refusing the mistakes a new event could bring."""
    index: dict[str, type[Event]] = {}
    for cls in classes:
        key = cls.cloudevent_type()
        if key in index:
            raise RuntimeError(f"{cls.__name__} and {index[key].__name__} are both {key}")
        if cls.topic not in topics.ALL_TOPICS:
            raise RuntimeError(f"{cls.__name__} is on {cls.topic!r}, not a topic in topics.py")
        index[key] = cls
    return index


#: Event classes by CloudEvents ``type``, e.g. ``"dunning.InvoiceIssued.v1"``.
EVENT_TYPES: dict[str, type[Event]] = _index(EVENT_CLASSES)


def event_class(type: str) -> builtins.type[Event]:
    """The payload class of a CloudEvents ``type``; ``UnknownEventTypeError`` (a ``KeyError``)
    when no event has it. (The parameter is named after the CloudEvents attribute.)"""
    try:
        return EVENT_TYPES[type]
    except KeyError:
        raise UnknownEventTypeError(type) from None


def events_on(topic: str) -> tuple[type[Event], ...]:
    """The event classes published on ``topic``."""
    return tuple(cls for cls in EVENT_CLASSES if cls.topic == topic)
