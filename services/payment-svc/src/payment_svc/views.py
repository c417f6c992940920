"""Stored payments, credit and webhook results as the API shows them."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from dunning_events.money import from_minor
from dunning_runtime.db import utc
from dunning_runtime.results import ItemResult
from payment_svc.commands import WebhookApplied
from payment_svc.models import (
    AccountCreditOut,
    AllocationOut,
    CreditSourceOut,
    CurrencyCredit,
    HeldOut,
    PaymentOut,
    WebhookOut,
)
from payment_svc.storage import Row, StoredPayment


def payment_out(stored: StoredPayment) -> PaymentOut:
    """A stored payment with its applications, as the API shows it."""
    return payment_view(stored.row, stored.applications)


def payment_result(result: ItemResult[StoredPayment]) -> ItemResult[BaseModel]:
    """A posted payment's result with the payment as the API shows it (typed as
    ``batches.respond`` takes it)."""
    value = payment_out(result.value) if result.value is not None else None
    return ItemResult[BaseModel](result.outcome, value, result.differences, result.error)


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


def webhook_out(applied: WebhookApplied) -> WebhookOut:
    """What a processor's notice did, as the API answers it (and keeps for replays)."""
    return WebhookOut(
        event_id=applied.event_id,
        type=applied.type,
        outcome=applied.outcome,
        payment=payment_out(applied.payment),
        differences=list(applied.differences),
    )


def credit_view(account_id: str, rows: Sequence[Row]) -> AccountCreditOut:
    """An account's credit per currency from its payments with money left (oldest
    first, the order it is used in)."""
    by_currency: dict[str, list[Row]] = {}
    for row in rows:
        by_currency.setdefault(row["currency"], []).append(row)
    credit = []
    for currency, found in sorted(by_currency.items()):

        def total(column: str, found: list[Row] = found, currency: str = currency) -> Any:
            return from_minor(sum(r[column] for r in found), currency)

        credit.append(
            CurrencyCredit(
                currency=currency,
                credit=total("credit_minor"),
                held=total("held_minor"),
                payments=[
                    CreditSourceOut(
                        payment_id=r["payment_id"],
                        received_at=utc(r["received_at"]),
                        credit=from_minor(r["credit_minor"], currency),
                        held=from_minor(r["held_minor"], currency),
                    )
                    for r in found
                ],
            )
        )
    return AccountCreditOut(account_id=account_id, credit=credit)
