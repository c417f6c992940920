"""Event factories for the bus tests, and a recorder of what an outbox stages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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


def recording(outbox: Any) -> list[Any]:
    """Every message ``outbox`` (a service's ``Outbox``) stages from now on, as it will
    be published: the bytes a fast path and a plain one must agree on."""
    add = outbox.add
    staged: list[Any] = []

    async def recorded(session: Any, *envelopes: Any) -> Any:
        messages = await add(session, *envelopes)
        staged.extend(messages)
        return messages

    outbox.add = recorded
    return staged


def alike(messages: list[Any], tenant: str) -> list[tuple[bytes, bytes]]:
    """The messages' keys and payloads with the tenant set aside (the event id, a fresh
    uuid each, travels in the headers): two tenants' identical requests compare equal."""
    return [
        (m.key.replace(tenant.encode(), b"T"), m.value.replace(f'"{tenant}"'.encode(), b'"T"'))
        for m in messages
    ]
