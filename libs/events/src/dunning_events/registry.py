"""Every published event type, by its CloudEvents ``type``."""

from __future__ import annotations

from dunning_events.dunning import (
    CollectionsHandoffRequested,
    DunningStageChanged,
    NotificationRequested,
    PaymentPlanAgreed,
    PromiseToPayBroken,
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
from dunning_events.notifications import NotificationFailed, NotificationSent
from dunning_events.payments import PaymentReceived, PaymentReversed

EVENT_CLASSES: tuple[type[Event], ...] = (
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceVoided,
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceSettled,
    PaymentReceived,
    PaymentReversed,
    NotificationRequested,
    DunningStageChanged,
    CollectionsHandoffRequested,
    PromiseToPayRecorded,
    PromiseToPayBroken,
    PaymentPlanAgreed,
    NotificationSent,
    NotificationFailed,
)

EVENT_TYPES: dict[str, type[Event]] = {cls.cloudevent_type(): cls for cls in EVENT_CLASSES}


def event_class(cloudevent_type: str) -> type[Event]:
    """The payload class of a CloudEvents ``type`` (KeyError when unknown)."""
    return EVENT_TYPES[cloudevent_type]
