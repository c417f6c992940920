"""The published event contract of the dunning platform (DESIGN.md principle 8).

* ``money``: exact ``Money`` (Decimal amount + ISO 4217 currency) and its rules;
* ``envelope``: the CloudEvents 1.0 compatible ``Envelope``, the ``Event`` base
  class and ``make_envelope``;
* ``invoices``, ``payments``, ``dunning``, ``notifications``: the events, by
  producer; ``registry``: all of them by CloudEvents type;
* ``topics``: topic names; ``codec``: Kafka binary mode and structured JSON;
* ``samples``: a valid sample of every event; ``generate``: the JSON Schemas and
  AsyncAPI document committed next to this package (``make schemas``).
"""

from __future__ import annotations

from dunning_events import topics
from dunning_events.codec import DecodeError, KafkaMessage, from_json, from_kafka, to_json, to_kafka
from dunning_events.common import Channel, Contact
from dunning_events.dunning import (
    AccountWrittenOff,
    CollectionsHandoffRequested,
    CreditHoldReleased,
    CreditHoldRequested,
    DunningStageChanged,
    Installment,
    InstallmentMissed,
    LateFeeAssessed,
    NoticeInvoice,
    NotificationRequested,
    PaymentPlanAgreed,
    PromiseToPayBroken,
    PromiseToPayKept,
    PromiseToPayRecorded,
)
from dunning_events.envelope import Envelope, Event, make_envelope
from dunning_events.invoices import (
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
from dunning_events.keys import ApiKeyRecorded
from dunning_events.money import (
    Currency,
    Money,
    NonNegativeMoney,
    PositiveMoney,
    minor_units,
    quantize,
)
from dunning_events.notifications import (
    CollectorTaskCompleted,
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
)
from dunning_events.payments import (
    Allocation,
    CreditApplied,
    HeldAllocation,
    PaymentReceived,
    PaymentReversed,
)
from dunning_events.registry import EVENT_CLASSES, EVENT_TYPES, event_class

__all__ = [
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "AccountWrittenOff",
    "Allocation",
    "ApiKeyRecorded",
    "Channel",
    "CollectionsHandoffRequested",
    "CollectorTaskCompleted",
    "Contact",
    "CreditApplied",
    "CreditHoldReleased",
    "CreditHoldRequested",
    "Currency",
    "DecodeError",
    "DunningStageChanged",
    "EarlyPaymentDiscount",
    "Envelope",
    "Event",
    "HeldAllocation",
    "Installment",
    "InstallmentMissed",
    "InvoiceDisputeResolved",
    "InvoiceDisputed",
    "InvoiceIssued",
    "InvoiceLine",
    "InvoiceOverdue",
    "InvoiceSettled",
    "InvoiceVoided",
    "KafkaMessage",
    "LateFee",
    "LateFeeAssessed",
    "Money",
    "NonNegativeMoney",
    "NoticeInvoice",
    "NotificationFailed",
    "NotificationRequested",
    "NotificationSent",
    "NotificationSuppressed",
    "PaymentPlanAgreed",
    "PaymentReceived",
    "PaymentReversed",
    "PositiveMoney",
    "PromiseToPayBroken",
    "PromiseToPayKept",
    "PromiseToPayRecorded",
    "Terms",
    "event_class",
    "from_json",
    "from_kafka",
    "make_envelope",
    "minor_units",
    "quantize",
    "to_json",
    "to_kafka",
    "topics",
]
