"""Stored invoice rows as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dunning_events.money import from_minor
from dunning_runtime.db import utc
from invoice_svc import domain
from invoice_svc.models import DisputeOut, InvoiceIn, InvoiceOut
from invoice_svc.storage import Row, balance_of


def invoice_view(row: Row, now: datetime, posted: InvoiceIn | None = None) -> InvoiceOut:
    """An invoice as the API shows it, ``days_past_due`` as of ``now``.

    ``posted``, the invoice as it was just accepted, lends its parts already validated
    (contact, terms, lines, ...) instead of validating the stored request's JSON of them
    again: the same values, as that JSON is their dump.
    """
    currency = row["currency"]
    balance = balance_of(row)
    dispute = None
    if row["disputed"]:
        dispute = DisputeOut(
            reason=row["dispute_reason"] or "",
            amount=from_minor(row["disputed_minor"] or 0, currency),
            opened_at=utc(row["disputed_at"]) or now,
        )
    overdue_at = utc(row["overdue_at"])
    assert overdue_at is not None
    return InvoiceOut.model_validate(
        {
            **(_parts(posted) if posted is not None else _stored_parts(row["request"])),
            "invoice_id": row["invoice_id"],
            "account_id": row["account_id"],
            "account_name": row["account_name"],
            "currency": currency,
            "amount_due": balance.amount_due,
            "amount_paid": balance.amount_paid,
            "credited": balance.credited,
            "balance": balance.balance,
            "balance_voided": balance.owed if balance.voided else None,
            "status": row["status"],
            "disputed": row["disputed"],
            "dispute": dispute,
            "days_past_due": domain.days_past_due(row["due_date"], row["timezone"], now),
            "overdue_since": domain.local_date(overdue_at, row["timezone"]),
            "issue_date": row["issue_date"],
            "due_date": row["due_date"],
            "segment": row["segment"],
            "timezone": row["timezone"],
            "locale": row["locale"],
            "void_reason": row["void_reason"],
            "voided_at": utc(row["voided_at"]),
            "settled_at": utc(row["settled_at"]),
            "created_at": utc(row["created_at"]),
            "updated_at": utc(row["updated_at"]),
        }
    )


def _parts(posted: InvoiceIn) -> dict[str, Any]:
    """The request's parts of the view, as the posted model holds them."""
    return {
        "contact": posted.contact,
        "terms": posted.terms,
        "early_payment_discount": posted.early_payment_discount,
        "late_fee": posted.late_fee,
        "lines": posted.lines,
        "metadata": posted.metadata,
    }


def _stored_parts(request: dict[str, Any]) -> dict[str, Any]:
    """The request's parts of the view, from the stored request's JSON."""
    return {
        **{k: request.get(k) for k in ("contact", "terms", "early_payment_discount", "late_fee")},
        "lines": request.get("lines", []),
        "metadata": request.get("metadata", {}),
    }
