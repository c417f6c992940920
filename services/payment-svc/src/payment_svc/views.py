"""Stored payments as the API shows them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from dunning_events.money import from_minor
from dunning_runtime.db import utc
from payment_svc.models import AllocationOut, HeldOut, PaymentOut
from payment_svc.storage import Row


def by_payment(applications: Iterable[Row]) -> dict[str, list[Row]]:
    """Applications grouped by payment id, each group oldest first (as given)."""
    grouped: dict[str, list[Row]] = {}
    for application in applications:
        grouped.setdefault(application["payment_id"], []).append(application)
    return grouped


def payment_view(row: Row, applications: Sequence[Row]) -> PaymentOut:
    """A payment with its allocations (and credit applications) and what it holds;
    ``applications`` may include other payments' (they are left out)."""
    currency = row["currency"]

    def amount(minor: int) -> Decimal:
        return from_minor(minor, currency)

    mine = [a for a in applications if a["payment_id"] == row["payment_id"]]
    return PaymentOut.model_validate(
        {
            "payment_id": row["payment_id"],
            "account_id": row["account_id"],
            "currency": currency,
            "amount": amount(row["amount_minor"]),
            "received_at": utc(row["received_at"]),
            "method": row["method"],
            "reference": row["reference"],
            "metadata": row["metadata"],
            "status": row["status"],
            "allocations": [
                AllocationOut(
                    invoice_id=a["invoice_id"],
                    amount=amount(a["amount_minor"]),
                    discount=amount(a["discount_minor"]),
                    kind=a["kind"],
                    applied_at=utc(a["applied_at"]),
                    reversed=a["reversed"],
                )
                for a in mine
                if a["kind"] != "held"
            ],
            "held": [
                HeldOut(invoice_id=a["invoice_id"], amount=amount(a["amount_minor"]))
                for a in mine
                if a["kind"] == "held" and not a["reversed"]
            ],
            "credit": amount(row["credit_minor"]),
            "unapplied": amount(row["credit_minor"] + row["held_minor"]),
            "source": row["source"],
            "reversed_at": utc(row["reversed_at"]),
            "reversal_reason": row["reversal_reason"],
            "created_at": utc(row["created_at"]),
            "updated_at": utc(row["updated_at"]),
        }
    )
