"""Property tests of the rules that decide (moved out of the commands into domain.py):
void and dispute preconditions, resolution, settle and reopen transitions, currency."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoice_svc import domain
from invoice_svc.domain import (
    AlreadyDisputed,
    Balance,
    InvoiceHasPayments,
    InvoiceNotDisputable,
    InvoiceRuleError,
    InvoiceStatus,
    NoOpenDispute,
)

cents = st.integers(min_value=1, max_value=10**11).map(lambda c: Decimal(c).scaleb(-2))
maybe_cents = st.integers(min_value=0, max_value=10**11).map(lambda c: Decimal(c).scaleb(-2))


@st.composite
def balances(draw: st.DrawFn) -> Balance:
    amount_due = draw(cents)
    return Balance(
        amount_due=amount_due,
        amount_paid=draw(maybe_cents),
        credited=draw(st.sampled_from([Decimal("0.00"), amount_due / 4])).quantize(Decimal("0.01")),
        voided=draw(st.booleans()),
    )


@given(balances())
def test_void_only_without_payments_and_only_once(balance: Balance) -> None:
    if balance.voided:
        assert domain.void(balance) == balance
        return
    if balance.amount_paid > 0:
        with pytest.raises(InvoiceHasPayments):
            domain.void(balance)
        return
    voided = domain.void(balance)
    assert voided.status == InvoiceStatus.VOID
    assert voided.balance == 0 and voided.owed == balance.balance
    assert domain.void(voided) == voided


@given(balances(), st.booleans(), st.one_of(st.none(), cents))
def test_dispute_preconditions(balance: Balance, disputed: bool, amount: Decimal | None) -> None:
    try:
        covered = domain.open_dispute(balance, "EUR", disputed=disputed, amount=amount)
    except InvoiceNotDisputable:
        assert balance.status in (InvoiceStatus.VOID, InvoiceStatus.PAID)
    except AlreadyDisputed:
        assert balance.status not in (InvoiceStatus.VOID, InvoiceStatus.PAID) and disputed
    except InvoiceRuleError as error:
        assert error.field == "amount"
        assert amount is not None and amount > balance.balance
    else:
        assert balance.status in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)
        assert not disputed
        assert covered == (balance.balance if amount is None else amount)
        assert 0 < covered <= balance.balance


def test_dispute_amount_in_the_currency_places() -> None:
    with pytest.raises(InvoiceRuleError, match="JPY allows at most 0") as info:
        domain.open_dispute(Balance(Decimal(100)), "JPY", disputed=False, amount=Decimal("1.5"))
    assert info.value.field == "amount"


@given(balances(), st.sampled_from(["upheld", "rejected"]), cents)
def test_resolution_credits_at_most_what_is_owed(
    balance: Balance, resolution: str, disputed_amount: Decimal
) -> None:
    with pytest.raises(NoOpenDispute):
        domain.resolve_dispute(
            balance, disputed=False, disputed_amount=disputed_amount, resolution=resolution
        )
    after = domain.resolve_dispute(
        balance, disputed=True, disputed_amount=disputed_amount, resolution=resolution
    )
    if resolution == "rejected":
        assert after == balance
    else:
        granted = after.credited - balance.credited
        assert granted == min(disputed_amount, balance.balance)
        assert after.balance == balance.balance - granted


@given(balances(), cents)
def test_settles_and_reopens_are_the_paid_transitions(balance: Balance, amount: Decimal) -> None:
    paid = domain.apply_payment(balance, amount)
    assert domain.settles(balance, paid) == (
        paid.status == InvoiceStatus.PAID and balance.status != InvoiceStatus.PAID
    )
    assert not domain.reopens(balance, paid)
    reversed_ = domain.reverse_payment(paid, amount)
    assert not domain.settles(paid, reversed_)
    assert domain.reopens(paid, reversed_) == (
        paid.status == InvoiceStatus.PAID and reversed_.status != InvoiceStatus.PAID
    )
    if not balance.voided and balance.credited == 0 and balance.amount_paid == 0:
        # From nothing paid, a payment of the whole amount settles; its reversal reopens.
        full = domain.apply_payment(balance, balance.amount_due)
        assert domain.settles(balance, full)
        assert domain.reopens(full, domain.reverse_payment(full, balance.amount_due))


@given(st.sampled_from(["EUR", "USD", "JPY"]), st.sampled_from(["EUR", "USD", "JPY"]))
def test_a_payment_applies_only_in_the_invoice_currency(invoice: str, payment: str) -> None:
    assert domain.payment_applies(invoice, payment) == (invoice == payment)
    assert not domain.payment_applies(None, payment)
