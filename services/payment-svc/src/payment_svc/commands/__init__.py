"""payment-svc's use cases, one module a job: receiving payments, reversing them,
processors' notices, payment-svc's view of invoices with the credit it applies, and
reading.

Each runs inside the caller's transaction: it takes the account locks, loads the rows
through ``storage``, asks ``domain`` where the money goes, writes the result through
``storage`` and stages the events in the outbox, so a change and its events commit
together. They return domain results (``Received``, an ``ItemResult`` of a
``StoredPayment``) and raise ``domain.PaymentRuleError``s; the routes map both to HTTP.
"""

from __future__ import annotations

from payment_svc.commands.invoice_view import apply_invoice_events
from payment_svc.commands.reading import account_credit, list_payments, load
from payment_svc.commands.receiving import Received, receive_payments
from payment_svc.commands.reversing import reverse_payment
from payment_svc.commands.webhooks import (
    Notice,
    WebhookApplied,
    WebhookRecorded,
    record_webhook,
)
from payment_svc.storage import PaymentFilter, StoredPayment

__all__ = [
    "Notice",
    "PaymentFilter",
    "Received",
    "StoredPayment",
    "WebhookApplied",
    "WebhookRecorded",
    "account_credit",
    "apply_invoice_events",
    "list_payments",
    "load",
    "receive_payments",
    "record_webhook",
    "reverse_payment",
]
