"""Invoice rules: pure functions of (state, input, policy, now), no IO.

Amounts are exact ``Decimal`` in the invoice's currency; dates are calendar
dates in the invoice's own time zone, because "overdue" is a question about
the customer's calendar, not the server's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from dunning_events.money import check_places
from dunning_runtime.rules import Conflict, NotFound, RuleError

ZERO = Decimal(0)


class InvoiceStatus(StrEnum):
    """Where an invoice stands (DESIGN.md)."""

    OPEN = "open"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    VOID = "void"


class InvoiceRuleError(RuleError):
    """A request the invoice's rules do not allow; ``field`` names the culprit.

    The HTTP edge maps each kind to one problem (``dunning_runtime.problems.problem_of``);
    ``code`` is its type.
    """

    code = "invoice-rule"


class InvoiceNotFound(InvoiceRuleError, NotFound):
    """No such invoice for the tenant (another tenant's invoice counts as none)."""

    code = "invoice-not-found"


class InvoiceStateConflict(InvoiceRuleError, Conflict):
    """The invoice's state does not allow the change now (a 409)."""


class InvoiceHasPayments(InvoiceStateConflict):
    """Payments were applied: reverse them or credit the invoice instead of voiding it."""

    code = "invoice-has-payments"


class InvoiceNotDisputable(InvoiceStateConflict):
    """Only unpaid, unvoided invoices can be disputed."""

    def __init__(self, status: InvoiceStatus) -> None:
        super().__init__(f"The invoice is {status.value}: only unpaid invoices can be disputed.")
        self.code = f"invoice-{status.value}"


class AlreadyDisputed(InvoiceStateConflict):
    """A dispute is open already."""

    code = "invoice-disputed"


class NoOpenDispute(InvoiceStateConflict):
    """Resolving needs an open dispute."""

    code = "no-open-dispute"


@dataclass(frozen=True)
class Balance:
    """The money side of an invoice."""

    amount_due: Decimal
    amount_paid: Decimal = ZERO
    credited: Decimal = ZERO
    voided: bool = False

    @property
    def owed(self) -> Decimal:
        """What the customer owes by the amounts, voided or not; never below zero
        (an overpayment is the payer's credit)."""
        owed = self.amount_due - self.amount_paid - self.credited
        # ``owed * 0`` keeps the currency's places: 0.00, not 0.
        return owed if owed > ZERO else (owed * 0).copy_abs()

    @property
    def balance(self) -> Decimal:
        """What is still owed: nothing on a void invoice (its ``owed`` was written off)."""
        return (self.owed * 0).copy_abs() if self.voided else self.owed

    @property
    def status(self) -> InvoiceStatus:
        """``void`` beats everything; then paid when nothing is owed."""
        if self.voided:
            return InvoiceStatus.VOID
        if self.balance == ZERO:
            return InvoiceStatus.PAID
        if self.amount_paid > ZERO:
            return InvoiceStatus.PARTIALLY_PAID
        return InvoiceStatus.OPEN


def apply_payment(balance: Balance, amount: Decimal, discount: Decimal = ZERO) -> Balance:
    """``balance`` after a payment allocation of ``amount`` (> 0) and the early-payment
    ``discount`` taken with it, which is credited (capped at what is then owed; see
    ``discount_granted``)."""
    if amount <= ZERO:
        raise InvoiceRuleError("a payment allocation must be positive", field="amount")
    paid = replace(balance, amount_paid=balance.amount_paid + amount)
    return replace(paid, credited=paid.credited + discount_granted(paid, discount))


def discount_granted(balance: Balance, discount: Decimal) -> Decimal:
    """The part of an early-payment ``discount`` that ``balance`` (already paid) can take:
    a discount never makes the invoice owe less than nothing."""
    return max(ZERO, min(discount, balance.owed))


def reverse_payment(balance: Balance, amount: Decimal, discount: Decimal = ZERO) -> Balance:
    """``balance`` after a bounced or charged-back allocation of ``amount``; the
    ``discount`` it had granted is owed again too."""
    if amount <= ZERO:
        raise InvoiceRuleError("a reversed allocation must be positive", field="amount")
    return replace(
        balance,
        amount_paid=max(ZERO, balance.amount_paid - amount),
        credited=max(ZERO, balance.credited - discount),
    )


def void(balance: Balance) -> Balance:
    """``balance`` once voided; voiding a void invoice changes nothing.

    An invoice with payments cannot be voided: the money has to go somewhere first.
    """
    if balance.voided:
        return balance
    if balance.amount_paid > ZERO:
        raise InvoiceHasPayments(
            f"The invoice has payments of {balance.amount_paid}; "
            "reverse them or issue a credit note before voiding it."
        )
    return replace(balance, voided=True)


def open_dispute(
    balance: Balance, currency: str, *, disputed: bool, amount: Decimal | None
) -> Decimal:
    """The amount a new dispute covers (default: the whole balance).

    Only an open or partially paid invoice without an open dispute can be disputed,
    over at most its balance, in the currency's decimal places.
    """
    status = balance.status
    if status in (InvoiceStatus.VOID, InvoiceStatus.PAID):
        raise InvoiceNotDisputable(status)
    if disputed:
        raise AlreadyDisputed("The invoice is already disputed.")
    covered = balance.balance if amount is None else amount
    try:
        check_places(covered, currency)
    except ValueError as exc:
        raise InvoiceRuleError(str(exc), field="amount") from None
    if covered > balance.balance:
        raise InvoiceRuleError(
            f"The disputed amount {covered} exceeds the balance {balance.balance} {currency}.",
            field="amount",
        )
    return covered


def resolve_dispute(
    balance: Balance, *, disputed: bool, disputed_amount: Decimal, resolution: str
) -> Balance:
    """``balance`` after the open dispute ends: ``upheld`` credits the disputed amount
    (capped at what is owed), ``rejected`` leaves it to be chased again."""
    if not disputed:
        raise NoOpenDispute("The invoice has no open dispute.")
    if resolution == "upheld":
        return credit(balance, disputed_amount)
    if resolution == "rejected":
        return balance
    raise InvoiceRuleError(f"unknown resolution {resolution!r}", field="resolution")


def settles(before: Balance, after: Balance) -> bool:
    """Whether a change settles the invoice: it becomes paid (``InvoiceSettled`` is owed)."""
    return after.status == InvoiceStatus.PAID and before.status != InvoiceStatus.PAID


def reopens(before: Balance, after: Balance) -> bool:
    """Whether a change reopens a paid invoice (it is chased, and announced overdue, again)."""
    return before.status == InvoiceStatus.PAID and after.status != InvoiceStatus.PAID


def payment_applies(invoice_currency: str | None, payment_currency: str) -> bool:
    """Whether an allocation moves an invoice's balance: the invoice exists and the money
    is in its currency (otherwise it is kept, unapplied, for a person to sort out)."""
    return invoice_currency is not None and invoice_currency == payment_currency


def credit(balance: Balance, amount: Decimal) -> Balance:
    """``balance`` after crediting ``amount`` (an upheld dispute), capped at what is owed."""
    return replace(balance, credited=balance.credited + min(amount, balance.balance))


def local_date(instant: datetime, timezone: str) -> date:
    """The calendar date at ``instant`` in ``timezone``."""
    return instant.astimezone(ZoneInfo(timezone)).date()


def overdue_since(due_date: date, grace_days: int) -> date:
    """The first calendar day on which the invoice counts as overdue."""
    return due_date + timedelta(days=grace_days + 1)


def overdue_at(due_date: date, timezone: str, grace_days: int) -> datetime:
    """The UTC instant the invoice becomes overdue: midnight starting ``overdue_since`` locally.

    Stored and indexed, so the scheduler finds due invoices without a scan.
    """
    local_midnight = datetime.combine(
        overdue_since(due_date, grace_days), time(0), tzinfo=ZoneInfo(timezone)
    )
    return local_midnight.astimezone(UTC)


def days_past_due(due_date: date, timezone: str, now: datetime) -> int:
    """Days since the due date in the invoice's time zone; 0 until it has passed."""
    return max(0, (local_date(now, timezone) - due_date).days)


def is_chased(status: InvoiceStatus, disputed: bool) -> bool:
    """Whether overdue detection watches the invoice: unpaid, undisputed, not void."""
    return status in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID) and not disputed


@dataclass(frozen=True)
class Standing:
    """What an invoice's balance decides about it besides the amounts: its status,
    whether ``InvoiceOverdue`` is still owed (``chase_pending``), and since when it is
    paid (``settled_at``)."""

    status: InvoiceStatus
    chase_pending: bool
    settled_at: datetime | None


def standing_of_new(balance: Balance, now: datetime) -> Standing:
    """The standing of an invoice accepted at ``now`` with ``balance`` (already paid by
    allocations that arrived before it, possibly in full): never disputed or announced."""
    status = balance.status
    return Standing(
        status=status,
        chase_pending=is_chased(status, disputed=False),
        settled_at=now if status == InvoiceStatus.PAID else None,
    )


def standing_after(
    before: Standing, balance: Balance, now: datetime, *, disputed: bool, notified: bool
) -> Standing:
    """The standing once the invoice has ``balance`` at ``now``: chased while unpaid,
    undisputed and not yet announced overdue; ``settled_at`` set when it becomes paid,
    cleared when it is reopened, kept otherwise."""
    status = balance.status
    settled_at = before.settled_at
    if status == InvoiceStatus.PAID and before.status != InvoiceStatus.PAID:
        settled_at = now
    elif status != InvoiceStatus.PAID and before.status == InvoiceStatus.PAID:
        settled_at = None
    return Standing(
        status=status,
        chase_pending=is_chased(status, disputed) and not notified,
        settled_at=settled_at,
    )
