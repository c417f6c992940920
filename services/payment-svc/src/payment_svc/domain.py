"""Cash application rules: pure functions of (open invoices, payment, terms), no IO.

Amounts are exact ``Decimal`` in one currency. The rules, in short (docs/payment-svc.md
has worked examples):

* explicit allocations are honoured: each must fit its invoice's balance, in its
  currency, on an invoice that is not void; one naming an invoice not yet known is
  *held* and applied when the invoice arrives (capped at its balance);
* without allocations the payment goes to the open invoices in its currency, oldest
  due date first, then lowest invoice id;
* what is left is unapplied credit, applied to the account's next invoices in that
  currency as they arrive (oldest payment first);
* an early-payment discount is the shortfall the terms forgive: money that, inside
  the discount window, brings an invoice to within its earned discount settles it,
  and the rest of the balance is the discount taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from dunning_events.invoices import early_payment_discount
from dunning_events.money import minor_units
from dunning_runtime.rules import Conflict, NotFound, RuleError

ZERO = Decimal(0)


class PaymentStatus(StrEnum):
    """How much of a payment is applied (the API's ``status``)."""

    APPLIED = "applied"
    PARTIALLY_APPLIED = "partially_applied"
    UNAPPLIED = "unapplied"
    REVERSED = "reversed"


class PaymentRuleError(RuleError):
    """A request the cash application rules refuse; ``field`` names the culprit (a 422)."""

    code = "payment-rule"


class PaymentNotFound(PaymentRuleError, NotFound):
    """No such payment for the tenant (another tenant's payment counts as none)."""

    code = "payment-not-found"


class AlreadyReversed(PaymentRuleError, Conflict):
    """A payment can be reversed once (a 409)."""

    code = "payment-already-reversed"


@dataclass(frozen=True)
class DiscountTerms:
    """An early-payment discount: ``percent`` of the amount due when paid within
    ``within_days`` of the issue date (in the invoice's time zone)."""

    percent: Decimal
    within_days: int


@dataclass(frozen=True)
class InvoiceState:
    """payment-svc's view of one invoice, built from invoice events and its own payments."""

    invoice_id: str
    currency: str
    amount_due: Decimal
    issue_date: date
    due_date: date
    timezone: str = "UTC"
    discount_terms: DiscountTerms | None = None
    paid: Decimal = ZERO  # allocations and credit applied, net of reversals
    discounted: Decimal = ZERO  # early-payment discounts taken, net of reversals
    credited: Decimal = ZERO  # credit notes: upheld disputes
    void: bool = False
    account_id: str = ""

    @property
    def balance(self) -> Decimal:
        """What is still owed; nothing on a void invoice, never below zero."""
        if self.void:
            return ZERO
        return max(ZERO, self.amount_due - self.paid - self.discounted - self.credited)

    @property
    def is_open(self) -> bool:
        """Whether money can still go to it."""
        return not self.void and self.balance > ZERO


@dataclass(frozen=True)
class Requested:
    """An allocation the payer asked for."""

    invoice_id: str
    amount: Decimal


@dataclass(frozen=True)
class PaymentIn:
    """A payment to apply. ``allocations`` None: the rules choose the invoices."""

    payment_id: str
    currency: str
    amount: Decimal
    received_at: datetime
    allocations: tuple[Requested, ...] | None = None
    account_id: str = ""


@dataclass(frozen=True)
class Posted:
    """A payment as posted (by the ERP or a processor): what the rules apply, and what is
    stored with it besides."""

    payment: PaymentIn
    method: str
    reference: str | None
    metadata: Mapping[str, str]
    #: The body as accepted (JSON): a later post of the same id is compared with it.
    request: dict[str, Any]


@dataclass(frozen=True)
class Applied:
    """Money applied to one invoice and the discount taken with it."""

    invoice_id: str
    amount: Decimal
    discount: Decimal = ZERO

    @property
    def settles(self) -> Decimal:
        """What it takes off the invoice's balance."""
        return self.amount + self.discount


@dataclass(frozen=True)
class Plan:
    """Where a payment goes: applied now, held for invoices not yet known, free credit.

    ``sum(applied.amount) + sum(held.amount) + credit == payment.amount``.
    """

    applied: tuple[Applied, ...]
    held: tuple[Requested, ...]
    credit: Decimal

    @property
    def unapplied(self) -> Decimal:
        """Held and free credit together: what the payment has not paid yet."""
        return self.credit + sum((h.amount for h in self.held), ZERO)


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of ``currency``: 0.01 EUR, 1 JPY."""
    return Decimal(1).scaleb(-minor_units(currency))


def local_date(instant: datetime, timezone: str) -> date:
    """The calendar date at ``instant`` in ``timezone``."""
    return instant.astimezone(ZoneInfo(timezone)).date()


def earned_discount(invoice: InvoiceState, paid_at: datetime) -> Decimal:
    """The discount money paid at ``paid_at`` can still take on ``invoice``: ``percent``
    of the amount due, if paid on or before issue date + ``within_days`` in the invoice's
    time zone, less what was taken already; always less than the balance (money has to
    settle something)."""
    terms = invoice.discount_terms
    if terms is None or invoice.void:
        return ZERO
    full = early_payment_discount(
        invoice.amount_due,
        invoice.currency,
        percent=terms.percent,
        within_days=terms.within_days,
        issue_date=invoice.issue_date,
        paid_on=local_date(paid_at, invoice.timezone),
    )
    if not full:
        return ZERO
    left = full - invoice.discounted
    return max(ZERO, min(left, invoice.balance - minor_unit(invoice.currency)))


def take(invoice: InvoiceState, amount: Decimal, paid_at: datetime) -> Applied:
    """``amount`` (at most the balance) applied to ``invoice``, with the discount it takes:
    when it leaves no more than the earned discount owed, that remainder is forgiven."""
    earned = earned_discount(invoice, paid_at)
    left = invoice.balance - amount
    discount = left if ZERO <= left <= earned and amount > ZERO else ZERO
    return Applied(invoice.invoice_id, amount, discount)


def applied_to(invoice: InvoiceState, applied: Applied) -> InvoiceState:
    """``invoice`` after ``applied``."""
    return replace(
        invoice,
        paid=invoice.paid + applied.amount,
        discounted=invoice.discounted + applied.discount,
    )


def undone(invoice: InvoiceState, applied: Applied) -> InvoiceState:
    """``invoice`` after ``applied`` is reversed: the money and the discount are owed again."""
    return replace(
        invoice,
        paid=max(ZERO, invoice.paid - applied.amount),
        discounted=max(ZERO, invoice.discounted - applied.discount),
    )


def open_by_age(invoices: Iterable[InvoiceState], currency: str) -> list[InvoiceState]:
    """Open invoices in ``currency``, oldest due date first, then lowest invoice id."""
    return sorted(
        (i for i in invoices if i.currency == currency and i.is_open),
        key=lambda i: (i.due_date, i.invoice_id),
    )


def allocate(invoices: Mapping[str, InvoiceState], payment: PaymentIn) -> Plan:
    """Where ``payment`` goes, given the account's ``invoices`` by id.

    Raises ``PaymentRuleError`` naming ``allocations[i]`` for an explicit allocation
    the rules refuse: more than the payment, more than its invoice's balance, a void
    invoice, another currency, or the same invoice twice.
    """
    if payment.allocations is None:
        return _by_age(invoices, payment)
    requested = payment.allocations
    total = sum((r.amount for r in requested), ZERO)
    if total > payment.amount:
        raise PaymentRuleError(
            f"The allocations add up to {total}, more than the payment's {payment.amount}.",
            field="allocations",
        )
    applied: list[Applied] = []
    held: list[Requested] = []
    seen: set[str] = set()
    for index, wanted in enumerate(requested):
        where = f"allocations[{index}]"
        if wanted.invoice_id in seen:
            raise PaymentRuleError(
                f"Invoice {wanted.invoice_id!r} is named twice; allocate to it once.",
                field=f"{where}.invoice_id",
            )
        seen.add(wanted.invoice_id)
        invoice = invoices.get(wanted.invoice_id)
        if invoice is None:
            held.append(wanted)
            continue
        if invoice.account_id != payment.account_id:
            raise PaymentRuleError(
                f"Invoice {wanted.invoice_id!r} belongs to another account.",
                field=f"{where}.invoice_id",
            )
        if invoice.void:
            raise PaymentRuleError(
                f"Invoice {wanted.invoice_id!r} is void.", field=f"{where}.invoice_id"
            )
        if invoice.currency != payment.currency:
            raise PaymentRuleError(
                f"Invoice {wanted.invoice_id!r} is in {invoice.currency}, "
                f"the payment in {payment.currency}.",
                field=f"{where}.invoice_id",
            )
        if wanted.amount > invoice.balance:
            raise PaymentRuleError(
                f"{wanted.amount} exceeds the balance {invoice.balance} {invoice.currency} "
                f"of invoice {wanted.invoice_id!r}.",
                field=f"{where}.amount",
            )
        applied.append(take(invoice, wanted.amount, payment.received_at))
    return Plan(tuple(applied), tuple(held), payment.amount - total)


def _by_age(invoices: Mapping[str, InvoiceState], payment: PaymentIn) -> Plan:
    available = payment.amount
    applied: list[Applied] = []
    mine = (i for i in invoices.values() if i.account_id == payment.account_id)
    for invoice in open_by_age(mine, payment.currency):
        if available <= ZERO:
            break
        part = take(invoice, min(available, invoice.balance), payment.received_at)
        applied.append(part)
        available -= part.amount
    return Plan(tuple(applied), (), available)


@dataclass(frozen=True)
class Credit:
    """A payment's money not yet applied: ``held`` for the arriving invoice by name,
    and its free ``credit``."""

    payment_id: str
    received_at: datetime
    held: Decimal = ZERO
    credit: Decimal = ZERO
    #: Invoices the payer named explicitly: its free credit never goes to them (the
    #: payer said how much they get), whatever order they arrive in.
    named: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class CreditUse:
    """Credit of one payment applied to an arriving invoice."""

    payment_id: str
    applied: Applied
    credit_left: Decimal  # the payment's free credit afterwards


def apply_credit(invoice: InvoiceState, credits: Sequence[Credit]) -> list[CreditUse]:
    """Credit applied to a newly arrived ``invoice``: first what payments held for it
    (in the order given: the payments' order), capped at its balance, the rest of each
    hold turning into that payment's free credit; then free credit in the order given
    (oldest payment first), except credit of payments that named this invoice.

    ``credits`` are the account's payments in ``invoice``'s currency with money left.
    """
    uses: list[CreditUse] = []
    state = invoice
    holding = [c for c in credits if c.held > ZERO]
    for source in holding:
        amount = min(source.held, state.balance)
        left = source.credit + source.held - amount
        if amount > ZERO:
            part = take(state, amount, source.received_at)
            state = applied_to(state, part)
            uses.append(CreditUse(source.payment_id, part, left))
        elif source.held > ZERO:
            # Nothing to pay any more: the whole hold becomes free credit.
            uses.append(CreditUse(source.payment_id, Applied(invoice.invoice_id, ZERO), left))
    used = {u.payment_id for u in uses}
    for source in credits:
        if source.payment_id in used or invoice.invoice_id in source.named:
            continue
        if not state.is_open:
            break
        if source.credit <= ZERO:
            continue
        amount = min(source.credit, state.balance)
        part = take(state, amount, source.received_at)
        state = applied_to(state, part)
        uses.append(CreditUse(source.payment_id, part, source.credit - amount))
    return uses


def payment_status(amount: Decimal, unapplied: Decimal, reversed_: bool) -> PaymentStatus:
    """``reversed`` beats everything; then by how much of ``amount`` is applied."""
    if reversed_:
        return PaymentStatus.REVERSED
    if unapplied <= ZERO:
        return PaymentStatus.APPLIED
    if unapplied >= amount:
        return PaymentStatus.UNAPPLIED
    return PaymentStatus.PARTIALLY_APPLIED


def check_reversible(reversed_: bool, payment_id: str) -> None:
    """A payment is reversed once; a second reversal is a conflict."""
    if reversed_:
        raise AlreadyReversed(f"Payment {payment_id!r} is already reversed.")


def hold_can_pay(invoice: InvoiceState, payer: tuple[str, str] | None) -> bool:
    """Whether a hold of the payment ``payer`` (its account and currency; None: the
    payment is gone) can pay the arriving ``invoice`` it named: only one of the same
    account in the same currency. Otherwise the hold becomes the payment's credit."""
    return payer is not None and payer == (invoice.account_id, invoice.currency)


def credit_note(invoice: InvoiceState, resolution: str, credited: Decimal | None) -> Decimal:
    """What an upheld dispute credits on ``invoice``: the credited amount, at most the
    balance; nothing for a rejected dispute or one without a credit."""
    if resolution != "upheld" or credited is None or credited <= ZERO:
        return ZERO
    return min(credited, invoice.balance)
