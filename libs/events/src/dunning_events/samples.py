"""One realistic sample of every event, for documentation and other teams' tests.

``sample_event(InvoiceIssued)`` is a valid ``InvoiceIssued`` of the account
``ACME-0042``; keyword arguments replace fields. Apart from envelope ids the
samples are fixed, so documents generated from them are stable.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, TypeVar

from dunning_events import dunning, invoices, keys, notifications, payments
from dunning_events.common import Contact
from dunning_events.envelope import Envelope, Event, make_envelope
from dunning_events.money import Money

__all__ = [
    "ACCOUNT",
    "TENANT",
    "TRACEPARENT",
    "WHEN",
    "sample_envelope",
    "sample_event",
]

E = TypeVar("E", bound=Event)

TENANT = "acme"
ACCOUNT = "ACME-0042"
WHEN = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)
#: A valid W3C traceparent, for tests of trace propagation.
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


_CONTACT = Contact(name="Dana Fischer", email="ap@acme.example", phone="+49 30 1234567")
_INVOICE = "INV-1001"
_DUE = date(2026, 3, 3)

# Field values per event class, in the shape model_validate takes.
_SAMPLES: dict[type[Event], dict[str, Any]] = {
    invoices.InvoiceIssued: {
        "invoice_id": _INVOICE,
        "account_name": "ACME GmbH",
        "contact": _CONTACT,
        "amount_due": _eur("1250.00"),
        "issue_date": date(2026, 2, 1),
        "due_date": _DUE,
        "segment": "standard",
        "timezone": "Europe/Berlin",
        "locale": "de-DE",
        "terms": {
            "net_days": 30,
            "early_payment_discount": {"percent": "2", "within_days": 10},
            "late_fee": {"kind": "percent_per_month", "percent": "1.5", "cap": "100.00"},
        },
        "lines": [
            {
                "description": "Consulting, February",
                "quantity": "10",
                "unit_price": "125.00",
                "amount": "1250.00",
            }
        ],
        "metadata": {"erp_document": "4711"},
    },
    invoices.InvoiceOverdue: {
        "invoice_id": _INVOICE,
        "balance": _eur("1250.00"),
        "due_date": _DUE,
        "overdue_since": date(2026, 3, 4),
        "days_past_due": 12,
    },
    invoices.InvoiceVoided: {
        "invoice_id": _INVOICE,
        "reason": "issued twice",
        "balance_voided": _eur("1250.00"),
    },
    invoices.InvoiceDisputed: {
        "invoice_id": _INVOICE,
        "reason": "two hours billed twice",
        "disputed_amount": _eur("250.00"),
    },
    invoices.InvoiceDisputeResolved: {
        "invoice_id": _INVOICE,
        "resolution": "upheld",
        "credited_amount": _eur("250.00"),
        "balance": _eur("1000.00"),
    },
    invoices.InvoiceSettled: {
        "invoice_id": _INVOICE,
        "amount_paid": _eur("1250.00"),
        "settled_at": WHEN,
    },
    payments.PaymentReceived: {
        "payment_id": "PAY-77",
        "amount": _eur("500.00"),
        "received_at": WHEN,
        "method": "bank_transfer",
        "reference": _INVOICE,
        "allocations": [
            {"invoice_id": _INVOICE, "amount": _eur("400.00"), "discount": _eur("8.00")}
        ],
        "unapplied": _eur("100.00"),
        "held": [{"invoice_id": "INV-1002", "amount": _eur("50.00")}],
    },
    payments.CreditApplied: {
        "payment_id": "PAY-77",
        "invoice_id": "INV-1002",
        "amount": _eur("50.00"),
        "discount": _eur("0.00"),
        "credit_left": _eur("50.00"),
        "applied_at": WHEN,
    },
    payments.PaymentReversed: {
        "payment_id": "PAY-77",
        "amount": _eur("500.00"),
        "reason": "chargeback",
        "reversed_at": WHEN,
        "allocations": [
            {"invoice_id": _INVOICE, "amount": _eur("400.00"), "discount": _eur("8.00")}
        ],
        "credit_voided": _eur("100.00"),
    },
    dunning.NotificationRequested: {
        "notification_id": "NTF-9",
        "account_name": "ACME GmbH",
        "stage": "overdue_1",
        "stage_sequence": 2,
        "channel": "email",
        "template": "overdue_1",
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
        "recipient": _CONTACT,
        "invoices": [
            {
                "invoice_id": _INVOICE,
                "number": "2026-1001",
                "amount_due": _eur("1250.00"),
                "balance": _eur("1250.00"),
                "due_date": _DUE,
                "days_past_due": 12,
            }
        ],
        "total_overdue": [_eur("1250.00")],
        "total_open": [_eur("1250.00")],
        "next_step": "overdue 2 in 7 days",
        "next_stage": "overdue_2",
        "next_step_in_days": 7,
        "not_before": WHEN,
    },
    dunning.DunningStageChanged: {
        "from_stage": "reminder",
        "to_stage": "overdue_1",
        "reason": "INV-1001 is 1 day past due",
        "segment": "standard",
        "sequence": 2,
    },
    dunning.CollectionsHandoffRequested: {
        "overdue_balance": [_eur("1250.00")],
        "oldest_days_past_due": 45,
        "reason": "45 days past due above the 500.00 EUR minimum",
    },
    dunning.PromiseToPayRecorded: {
        "promise_id": "PTP-3",
        "amount": _eur("1250.00"),
        "promised_date": date(2026, 3, 31),
        "recorded_by": "collector:jo",
    },
    dunning.PromiseToPayBroken: {
        "promise_id": "PTP-3",
        "amount": _eur("1250.00"),
        "promised_date": date(2026, 3, 31),
        "amount_received": _eur("0.00"),
    },
    dunning.PaymentPlanAgreed: {
        "plan_id": "PLAN-1",
        "currency": "EUR",
        "installments": [
            {"due_date": date(2026, 4, 1), "amount": _eur("625.00")},
            {"due_date": date(2026, 5, 1), "amount": _eur("625.00")},
        ],
    },
    dunning.LateFeeAssessed: {
        "fee_invoice_id": "FEE-5c1e9a2b7d3f4e60",
        "invoice_id": _INVOICE,
        "amount": _eur("18.75"),
        "stage": "final_notice",
        "assessed_on": date(2026, 4, 2),
        "reason": "1.5% of 1250.00 EUR per started month overdue (1 month), capped at 100.00",
        "account_name": "ACME GmbH",
        "contact": _CONTACT,
        "segment": "standard",
        "timezone": "Europe/Berlin",
        "locale": "de-DE",
    },
    dunning.CreditHoldRequested: {
        "stage": "final_notice",
        "overdue_balance": [_eur("1250.00")],
        "reason": "INV-1001 is 30 days past due",
    },
    dunning.CreditHoldReleased: {"reason": "nothing is overdue any more"},
    dunning.PromiseToPayKept: {
        "promise_id": "PTP-3",
        "amount": _eur("1250.00"),
        "promised_date": date(2026, 3, 31),
        "amount_received": _eur("1250.00"),
    },
    dunning.InstallmentMissed: {
        "plan_id": "PLAN-1",
        "due_date": date(2026, 4, 1),
        "amount_due": _eur("625.00"),
        "amount_received": _eur("0.00"),
    },
    dunning.AccountWrittenOff: {
        "written_off": [_eur("1250.00")],
        "reason": "customer insolvent",
        "written_off_by": "api",
    },
    notifications.NotificationSent: {
        "notification_id": "NTF-9",
        "channel": "email",
        "sent_at": WHEN,
        "provider_message_id": "<ntf-9@dunning.example>",
    },
    notifications.NotificationFailed: {
        "notification_id": "NTF-9",
        "channel": "sms",
        "error": "gateway answered 503",
        "attempts": 3,
        "permanent": False,
    },
    notifications.NotificationSuppressed: {
        "notification_id": "NTF-9",
        "channel": "email",
        "reason": "opted_out",
        "detail": "ap@acme.example opted out of email on 2026-03-10",
    },
    notifications.CollectorTaskCompleted: {
        "task_id": "NTF-12",
        "notification_id": "NTF-12",
        "outcome": "promised",
        "promised_amount": _eur("1250.00"),
        "promised_date": date(2026, 3, 31),
        "note": "Dana will pay by the end of the month.",
        "completed_by": "collector:jo",
        "completed_at": WHEN,
    },
    keys.ApiKeyRecorded: {
        "key_id": "3f9c2a7b41d0e8c6",
        "role": "tenant",
        "tenant": "acme",
        "prefix": "dk_3f9c2a7b41d0e8c6_Zq4w",
        "digest": "9a" * 32,
        "created_at": WHEN,
        "expires_at": None,
        "revoked_at": None,
    },
}


def sample_event(event_cls: type[E], **changes: Any) -> E:
    """A realistic, valid instance of ``event_cls``; ``changes`` replace fields (and are
    validated like the rest)."""
    return event_cls.model_validate({"account_id": ACCOUNT, **_SAMPLES[event_cls], **changes})


def sample_envelope(
    event_cls: type[Event],
    tenant: str = TENANT,
    *,
    id: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
    **changes: Any,
) -> Envelope:
    """``sample_event(event_cls, **changes)`` in its envelope from source ``/samples`` at
    ``WHEN``. The id is a new UUID unless given, so two samples are two events."""
    return make_envelope(
        sample_event(event_cls, **changes),
        tenant=tenant,
        source="/samples",
        time=WHEN,
        id=id,
        traceparent=traceparent,
        tracestate=tracestate,
    )
