"""The events payment-svc publishes, built from stored rows and the rules' decisions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from dunning_events import (
    Allocation,
    CreditApplied,
    HeldAllocation,
    Money,
    PaymentReceived,
    PaymentReversed,
)
from dunning_events.money import from_minor
from dunning_runtime.db import utc
from payment_svc.domain import ZERO, Applied, Plan
from payment_svc.storage import Row


def _money(amount: Decimal, currency: str) -> Money:
    return Money(amount=amount, currency=currency)


def _discount(amount: Decimal, currency: str) -> Money | None:
    return _money(amount, currency) if amount > ZERO else None


def allocation(applied: Applied, currency: str) -> Allocation:
    """An ``Allocation`` in the contract: the amount and the discount taken with it."""
    return Allocation(
        invoice_id=applied.invoice_id,
        amount=_money(applied.amount, currency),
        discount=_discount(applied.discount, currency),
    )


def received(payment: Row, plan: Plan) -> PaymentReceived:
    """``PaymentReceived`` for a stored payment and where it went."""
    currency = payment["currency"]
    received_at = utc(payment["received_at"])
    assert received_at is not None
    return PaymentReceived(
        account_id=payment["account_id"],
        payment_id=payment["payment_id"],
        amount=_money(from_minor(payment["amount_minor"], currency), currency),
        received_at=received_at,
        method=payment["method"],
        reference=payment["reference"],
        allocations=[allocation(a, currency) for a in plan.applied],
        unapplied=_money(plan.unapplied, currency),
        held=[
            HeldAllocation(invoice_id=h.invoice_id, amount=_money(h.amount, currency))
            for h in plan.held
        ],
    )


def credit_applied(
    payment: Row, applied: Applied, credit_left: Decimal, now: datetime
) -> CreditApplied:
    """``CreditApplied``: ``applied`` came from the payment's credit; ``credit_left`` is
    what the payment has left (held amounts included)."""
    currency = payment["currency"]
    return CreditApplied(
        account_id=payment["account_id"],
        payment_id=payment["payment_id"],
        invoice_id=applied.invoice_id,
        amount=_money(applied.amount, currency),
        discount=_discount(applied.discount, currency),
        credit_left=_money(credit_left, currency),
        applied_at=now,
    )


def reversed_(
    payment: Row, undone: list[Applied], credit_voided: Decimal, reason: str, now: datetime
) -> PaymentReversed:
    """``PaymentReversed`` undoing every application of the payment."""
    currency = payment["currency"]
    return PaymentReversed(
        account_id=payment["account_id"],
        payment_id=payment["payment_id"],
        amount=_money(from_minor(payment["amount_minor"], currency), currency),
        reason=reason,
        reversed_at=now,
        allocations=[allocation(a, currency) for a in undone],
        credit_voided=_money(credit_voided, currency),
    )
