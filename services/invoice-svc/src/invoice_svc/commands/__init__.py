"""invoice-svc's use cases, one module per job; routes, consumers and jobs call these.

Each runs inside a transaction (the caller's, or one it opens): it takes the account
locks, loads through ``storage``, asks ``domain`` what the change is, writes through
``storage`` and stages the events in the outbox, so a change and its events commit
together. Results are domain results (rows, ``Created``: a
``dunning_runtime.results.ItemResult`` of the row); rule errors are
``domain.InvoiceRuleError``s. The HTTP edge maps both.

- ``invoices``: accept, read, list, void, dispute and resolve invoices;
- ``payments``: apply a chunk of payments (and reversals) to the invoices they name;
- ``fees``: late fees charged by dunning-svc become fee invoices;
- ``overdue``: announce the invoices that have become overdue.

Their events come from ``/invoice-svc`` (``Scope.of(invoice_svc.NAME, ...)``).
"""

from __future__ import annotations

from invoice_svc.commands.fees import create_fee_invoices, fee_invoice
from invoice_svc.commands.invoices import (
    Created,
    create_invoices,
    dispute_invoice,
    get_invoice,
    list_invoices,
    load,
    resolve_dispute,
    void_invoice,
)
from invoice_svc.commands.overdue import detect_overdue, detect_overdue_batch
from invoice_svc.commands.payments import apply_payments

__all__ = [
    "Created",
    "apply_payments",
    "create_fee_invoices",
    "create_invoices",
    "detect_overdue",
    "detect_overdue_batch",
    "dispute_invoice",
    "fee_invoice",
    "get_invoice",
    "list_invoices",
    "load",
    "resolve_dispute",
    "void_invoice",
]
