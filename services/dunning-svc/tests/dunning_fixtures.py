"""dunning-svc test helpers: events of one account as the other services publish them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from dunning_events import (
    Allocation,
    Event,
    InvoiceDisputed,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceSettled,
    InvoiceVoided,
    Money,
    PaymentReceived,
    PaymentReversed,
)

ACME = {"Authorization": "Bearer acme-key"}
GLOBEX = {"Authorization": "Bearer globex-key"}
ACCOUNT = "ACME-42"
CONTACT = {"name": "Dana Fischer", "email": "ap@acme.example", "phone": "+49 30 1234567"}


def eur(amount: str, currency: str = "EUR") -> Money:
    return Money(amount=amount, currency=currency)  # type: ignore[arg-type]


def issued(
    invoice_id: str = "INV-1",
    amount: str = "1250.00",
    due: date = date(2026, 3, 3),
    *,
    account: str = ACCOUNT,
    segment: str = "standard",
    timezone: str = "Europe/Berlin",
    late_fee: dict[str, Any] | None = None,
    currency: str = "EUR",
) -> InvoiceIssued:
    terms: dict[str, Any] = {"net_days": 30}
    if late_fee is not None:
        terms["late_fee"] = late_fee
    return InvoiceIssued.model_validate(
        {
            "account_id": account,
            "invoice_id": invoice_id,
            "account_name": "ACME GmbH",
            "contact": CONTACT,
            "amount_due": eur(amount, currency),
            "issue_date": date(2026, 2, 1) if due >= date(2026, 2, 1) else due,
            "due_date": due,
            "segment": segment,
            "timezone": timezone,
            "locale": "de-DE",
            "terms": terms,
        }
    )


def overdue(
    invoice_id: str = "INV-1",
    balance: str = "1250.00",
    due: date = date(2026, 3, 3),
    account: str = ACCOUNT,
) -> InvoiceOverdue:
    return InvoiceOverdue(
        account_id=account,
        invoice_id=invoice_id,
        balance=eur(balance),
        due_date=due,
        overdue_since=date.fromordinal(due.toordinal() + 1),
        days_past_due=1,
    )


def paid(
    payment_id: str,
    *allocated: tuple[str, str],
    at: datetime = datetime(2026, 3, 10, 10, tzinfo=UTC),
    unapplied: str = "0.00",
    account: str = ACCOUNT,
) -> PaymentReceived:
    from decimal import Decimal

    total = sum((Decimal(a) for _, a in allocated), Decimal(unapplied))
    return PaymentReceived(
        account_id=account,
        payment_id=payment_id,
        amount=eur(f"{total:.2f}"),
        received_at=at,
        method="bank_transfer",
        allocations=[Allocation(invoice_id=i, amount=eur(a)) for i, a in allocated],
        unapplied=eur(unapplied),
    )


def reversed_(
    payment_id: str, *allocated: tuple[str, str], account: str = ACCOUNT
) -> PaymentReversed:
    from decimal import Decimal

    total = sum((Decimal(a) for _, a in allocated), Decimal(0)) or Decimal(1)
    return PaymentReversed(
        account_id=account,
        payment_id=payment_id,
        amount=eur(f"{total:.2f}"),
        reason="chargeback",
        reversed_at=datetime(2026, 3, 12, 10, tzinfo=UTC),
        allocations=[Allocation(invoice_id=i, amount=eur(a)) for i, a in allocated],
    )


def disputed(invoice_id: str, amount: str, account: str = ACCOUNT) -> InvoiceDisputed:
    return InvoiceDisputed(
        account_id=account,
        invoice_id=invoice_id,
        reason="damaged goods",
        disputed_amount=eur(amount),
    )


def resolved(
    invoice_id: str,
    resolution: str,
    balance: str,
    credited: str | None = None,
    account: str = ACCOUNT,
) -> InvoiceDisputeResolved:
    return InvoiceDisputeResolved(
        account_id=account,
        invoice_id=invoice_id,
        resolution=resolution,  # type: ignore[arg-type]
        credited_amount=eur(credited) if credited else None,
        balance=eur(balance),
    )


def settled(invoice_id: str, amount: str = "1250.00", account: str = ACCOUNT) -> InvoiceSettled:
    return InvoiceSettled(
        account_id=account,
        invoice_id=invoice_id,
        amount_paid=eur(amount),
        settled_at=datetime(2026, 3, 10, 10, tzinfo=UTC),
    )


def voided(invoice_id: str, balance: str = "1250.00", account: str = ACCOUNT) -> InvoiceVoided:
    return InvoiceVoided(
        account_id=account, invoice_id=invoice_id, reason="cancelled", balance_voided=eur(balance)
    )


def kinds(events: list[Event]) -> list[str]:
    """Event types, with the channel of each notice: ``NotificationRequested:email``."""
    return [
        f"{e.event_type}:{e.channel}" if hasattr(e, "channel") else e.event_type for e in events
    ]


async def publish(settings: Any, *events: Event, tenant: str = "acme") -> None:
    """Publish ``events`` on their topics as their producers would (CloudEvents binary)."""
    from dunning_events import make_envelope
    from dunning_events.codec import to_kafka
    from dunning_runtime.bus import create_bus
    from dunning_runtime.bus.port import OutgoingMessage

    bus = create_bus(settings)
    await bus.start()
    try:
        messages = []
        for event in events:
            kafka = to_kafka(
                make_envelope(event, tenant=tenant, source="/tests", time=datetime.now(UTC))
            )
            messages.append(OutgoingMessage(event.topic, kafka.key, kafka.value, kafka.headers))
        await bus.publish(messages)
    finally:
        await bus.close()


class Reader:
    """Reads what dunning-svc published on dunning.commands and dunning.events."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.seen: list[Event] = []

    async def __aenter__(self) -> Reader:
        from dunning_events import topics
        from dunning_runtime.bus import create_bus

        self.bus = create_bus(self.settings)
        await self.bus.start()
        await self.bus.ensure_topics([topics.DUNNING_COMMANDS, topics.DUNNING_EVENTS])
        self.consumer = self.bus.consumer(
            "test-reader", [topics.DUNNING_COMMANDS, topics.DUNNING_EVENTS]
        )
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.bus.close()

    async def drain(self, timeout: float = 1.0) -> list[Event]:
        """Everything published since the last drain (waits ``timeout`` for stragglers)."""
        from dunning_events.codec import from_kafka

        records = await self.consumer.poll(timeout, 10_000)
        while True:
            more = await self.consumer.poll(0.3, 10_000)
            if not more:
                break
            records += more
        fresh = [from_kafka(r.key, r.value, r.headers).data for r in records]
        self.seen += fresh
        return fresh

    async def drain_until(
        self, done: Callable[[list[Event]], bool], timeout: float = 60.0
    ) -> list[Event]:
        """Drain until ``done(what was drained)`` holds (a consumer joining its group on
        Kafka can take seconds to see anything); fails after ``timeout``."""
        import asyncio

        fresh: list[Event] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while not done(fresh):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not all expected events arrived: {len(fresh)} did")
            fresh += await self.drain(0.5)
        return fresh + await self.drain(0.5)
