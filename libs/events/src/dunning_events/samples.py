"""One realistic sample of every event, for documentation and other teams' tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from dunning_events import dunning, invoices, notifications, payments
from dunning_events.envelope import Envelope, Event, make_envelope
from dunning_events.money import Money

E = TypeVar("E", bound=Event)

ACCOUNT = "ACME-0042"
WHEN = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)


def eur(amount: str) -> Money:
    """Euros."""
    return Money(amount=Decimal(amount), currency="EUR")


_CONTACT = invoices.Contact(name="Dana Fischer", email="ap@acme.example", phone="+49 30 1234567")
_ALLOCATION = payments.Allocation(invoice_id="INV-1001", amount=eur("400.00"))

_SAMPLES: dict[type[Event], dict[str, Any]] = {
    invoices.InvoiceIssued: {
        "invoice_id": "INV-1001",
        "account_name": "ACME GmbH",
        "contact": _CONTACT,
        "amount_due": eur("1250.00"),
        "issue_date": date(2026, 2, 1),
        "due_date": date(2026, 3, 3),
        "timezone": "Europe/Berlin",
        "locale": "de-DE",
        "terms": invoices.Terms(
            net_days=30,
            early_payment_discount=invoices.EarlyPaymentDiscount(
                percent=Decimal("2"), within_days=10
            ),
            late_fee=invoices.LateFee(
                kind="percent_per_month", percent=Decimal("1.5"), cap=Decimal("100.00")
            ),
        ),
        "lines": [
            invoices.InvoiceLine(
                description="Consulting, February",
                quantity=Decimal("10"),
                unit_price=Decimal("125.00"),
                amount=Decimal("1250.00"),
            )
        ],
        "metadata": {"erp_document": "4711"},
    },
    invoices.InvoiceOverdue: {
        "invoice_id": "INV-1001",
        "balance": eur("1250.00"),
        "due_date": date(2026, 3, 3),
        "overdue_since": date(2026, 3, 4),
        "days_past_due": 12,
    },
    invoices.InvoiceVoided: {
        "invoice_id": "INV-1001",
        "reason": "issued twice",
        "balance_voided": eur("1250.00"),
    },
    invoices.InvoiceDisputed: {
        "invoice_id": "INV-1001",
        "reason": "two hours billed twice",
        "disputed_amount": eur("250.00"),
    },
    invoices.InvoiceDisputeResolved: {
        "invoice_id": "INV-1001",
        "resolution": "upheld",
        "credited_amount": eur("250.00"),
        "balance": eur("1000.00"),
    },
    invoices.InvoiceSettled: {
        "invoice_id": "INV-1001",
        "amount_paid": eur("1250.00"),
        "settled_at": WHEN,
    },
    payments.PaymentReceived: {
        "payment_id": "PAY-77",
        "amount": eur("500.00"),
        "received_at": WHEN,
        "method": "bank_transfer",
        "reference": "INV-1001",
        "allocations": [_ALLOCATION],
        "unapplied": eur("100.00"),
    },
    payments.PaymentReversed: {
        "payment_id": "PAY-77",
        "amount": eur("500.00"),
        "reason": "chargeback",
        "reversed_at": WHEN,
        "allocations": [_ALLOCATION],
    },
    dunning.NotificationRequested: {
        "notification_id": "NTF-9",
        "account_name": "ACME GmbH",
        "stage": "overdue_1",
        "channel": "email",
        "template": "overdue_1",
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
        "recipient": _CONTACT,
        "invoices": [
            dunning.NoticeInvoice(
                invoice_id="INV-1001",
                number="2026-1001",
                amount_due=eur("1250.00"),
                balance=eur("1250.00"),
                due_date=date(2026, 3, 3),
                days_past_due=12,
            )
        ],
        "total_overdue": [eur("1250.00")],
        "next_step": "a firmer reminder and an SMS in 7 days",
        "not_before": WHEN,
    },
    dunning.DunningStageChanged: {
        "from_stage": "reminder",
        "to_stage": "overdue_1",
        "reason": "INV-1001 is 1 day past due",
        "segment": "standard",
    },
    dunning.CollectionsHandoffRequested: {
        "overdue_balance": [eur("1250.00")],
        "oldest_days_past_due": 45,
        "reason": "45 days past due above the 500.00 EUR minimum",
    },
    dunning.PromiseToPayRecorded: {
        "promise_id": "PTP-3",
        "amount": eur("1250.00"),
        "promised_date": date(2026, 3, 31),
        "recorded_by": "collector:jo",
    },
    dunning.PromiseToPayBroken: {
        "promise_id": "PTP-3",
        "amount": eur("1250.00"),
        "promised_date": date(2026, 3, 31),
        "amount_received": eur("0.00"),
    },
    dunning.PaymentPlanAgreed: {
        "plan_id": "PLAN-1",
        "currency": "EUR",
        "installments": [
            dunning.Installment(due_date=date(2026, 4, 1), amount=eur("625.00")),
            dunning.Installment(due_date=date(2026, 5, 1), amount=eur("625.00")),
        ],
    },
    notifications.NotificationSent: {
        "notification_id": "NTF-9",
        "channel": "email",
        "sent_at": WHEN,
        "provider_message_id": "<ntf-9@dunning>",
    },
    notifications.NotificationFailed: {
        "notification_id": "NTF-9",
        "channel": "sms",
        "error": "gateway answered 503",
        "attempts": 3,
        "permanent": False,
    },
}


def sample_event(cls: type[E], **changes: Any) -> E:
    """A realistic instance of ``cls`` (fields overridable with ``changes``)."""
    return cls.model_validate({"account_id": ACCOUNT, **_SAMPLES[cls], **changes})


def sample_envelope(cls: type[Event], tenant: str = "acme") -> Envelope:
    """A sample event of ``cls`` in its envelope."""
    return make_envelope(sample_event(cls), tenant=tenant, source="/samples", time=WHEN)
