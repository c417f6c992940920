"""Event factories for the bus tests."""

from __future__ import annotations

from datetime import UTC, datetime

from dunning_events import Envelope, InvoiceOverdue, make_envelope
from dunning_events.codec import to_kafka
from dunning_events.samples import sample_event
from dunning_runtime.bus.port import OutgoingMessage

TENANT = "acme"
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def overdue(account: str, seq: int, *, tenant: str = TENANT) -> Envelope:
    """An ``InvoiceOverdue`` whose ``days_past_due`` carries a per-account sequence number."""
    base = sample_event(InvoiceOverdue)
    data = base.model_copy(
        update={"account_id": account, "invoice_id": f"{account}-inv-{seq}", "days_past_due": seq}
    )
    return make_envelope(data, tenant=tenant, source="/tests", time=NOW)


def message(envelope: Envelope) -> OutgoingMessage:
    """The envelope as a bus message on its topic (CloudEvents Kafka binary mode)."""
    kafka = to_kafka(envelope)
    return OutgoingMessage(envelope.data.topic, kafka.key, kafka.value, list(kafka.headers))
