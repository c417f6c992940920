"""Late fees charged by dunning-svc become fee invoices, chased like any invoice."""

from __future__ import annotations

from typing import Any

import httpx
from invoice_fixtures import ACME
from test_invoice_flow import published, until

from dunning_events import InvoiceIssued, LateFeeAssessed, make_envelope, topics
from dunning_events.codec import to_kafka
from dunning_events.samples import sample_event
from dunning_runtime.bus import create_bus
from dunning_runtime.bus.port import OutgoingMessage


async def charge(settings: Any, fee: LateFeeAssessed, *, times: int = 1) -> None:
    """Publish the fee on dunning.events as dunning-svc would (``times`` deliveries)."""
    envelope = make_envelope(fee, tenant="acme", source="/dunning-svc", time=fee_time())
    kafka = to_kafka(envelope)
    bus = create_bus(settings)
    await bus.start()
    await bus.ensure_topics([topics.DUNNING_EVENTS])
    message = OutgoingMessage(topics.DUNNING_EVENTS, kafka.key, kafka.value, kafka.headers)
    await bus.publish([message] * times)
    await bus.close()


def fee_time() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 4, 2, 9, tzinfo=UTC)


async def test_a_late_fee_becomes_a_fee_invoice_due_at_once(
    client: httpx.AsyncClient, invoice_settings
) -> None:
    fee = sample_event(LateFeeAssessed, account_id="ACME-42")
    await charge(invoice_settings, fee, times=2)  # a redelivery changes nothing

    async def created() -> bool:
        response = await client.get(f"/v1/invoices/{fee.fee_invoice_id}", headers=ACME)
        return response.status_code == 200

    await until(created)
    body = (await client.get(f"/v1/invoices/{fee.fee_invoice_id}", headers=ACME)).json()
    assert body["account_id"] == "ACME-42"
    assert (body["amount_due"], body["currency"]) == ("18.75", "EUR")
    assert body["due_date"] == body["issue_date"] == "2026-04-02"
    assert body["status"] == "open"
    assert body["metadata"] == {"kind": "fee", "fee_for": "INV-1001", "stage": "final_notice"}
    issued = [e.data for e in await published(invoice_settings, 1)]
    assert len(issued) == 1 and isinstance(issued[0], InvoiceIssued)
    assert issued[0].invoice_id == fee.fee_invoice_id
    assert issued[0].metadata["kind"] == "fee"
    listed = (await client.get("/v1/invoices?account_id=ACME-42", headers=ACME)).json()
    assert [i["invoice_id"] for i in listed["items"]] == [fee.fee_invoice_id]
