"""The published event contract of the dunning platform (DESIGN.md principle 8).

Envelope (CloudEvents 1.0 compatible), every event as a pydantic v2 model with
exact money, topic names, and codecs. JSON Schemas and an AsyncAPI document
are generated from these models (``make schemas``) and committed.
"""

from __future__ import annotations

from dunning_events import topics
from dunning_events.dunning import (
    CollectionsHandoffRequested,
    DunningStageChanged,
    Installment,
    NoticeInvoice,
    NotificationRequested,
    PaymentPlanAgreed,
    PromiseToPayBroken,
    PromiseToPayRecorded,
)
from dunning_events.envelope import Envelope, Event, make_envelope
from dunning_events.invoices import (
    Contact,
    EarlyPaymentDiscount,
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceLine,
    InvoiceOverdue,
    InvoiceSettled,
    InvoiceVoided,
    LateFee,
    Terms,
)
from dunning_events.money import Money, NonNegativeMoney, PositiveMoney
from dunning_events.notifications import NotificationFailed, NotificationSent
from dunning_events.payments import Allocation, PaymentReceived, PaymentReversed
from dunning_events.registry import EVENT_CLASSES, EVENT_TYPES, event_class

__all__ = [
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "Allocation",
    "CollectionsHandoffRequested",
    "Contact",
    "DunningStageChanged",
    "EarlyPaymentDiscount",
    "Envelope",
    "Event",
    "Installment",
    "InvoiceDisputeResolved",
    "InvoiceDisputed",
    "InvoiceIssued",
    "InvoiceLine",
    "InvoiceOverdue",
    "InvoiceSettled",
    "InvoiceVoided",
    "LateFee",
    "Money",
    "NonNegativeMoney",
    "NoticeInvoice",
    "NotificationFailed",
    "NotificationRequested",
    "NotificationSent",
    "PaymentPlanAgreed",
    "PaymentReceived",
    "PaymentReversed",
    "PositiveMoney",
    "PromiseToPayBroken",
    "PromiseToPayRecorded",
    "Terms",
    "event_class",
    "make_envelope",
    "topics",
]
