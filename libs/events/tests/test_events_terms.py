"""The contract's terms mean one thing everywhere: the late fee and early-payment
discount an invoice's ``terms`` grant, as invoice-svc, payment-svc and dunning-svc all
compute them (``dunning_events.invoices``)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dunning_events.invoices import early_payment_discount, late_fee

cents = st.integers(min_value=1, max_value=10**11).map(lambda c: Decimal(c).scaleb(-2))
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))


@given(
    cents,
    st.decimals(min_value=Decimal("0.1"), max_value=Decimal(50), places=1),
    st.integers(0, 60),
    dates,
    st.integers(0, 90),
)
def test_early_payment_discount(
    amount: Decimal, percent: Decimal, within: int, issued: date, after: int
) -> None:
    assume(issued + timedelta(days=after) <= date(2099, 1, 1))
    discount = early_payment_discount(
        amount,
        "EUR",
        percent=percent,
        within_days=within,
        issue_date=issued,
        paid_on=issued + timedelta(days=after),
    )
    assert discount.as_tuple().exponent == -2
    if after > within:
        assert discount == 0
    else:
        assert abs(discount - amount * percent / 100) <= Decimal("0.005")
        assert 0 <= discount <= amount


@given(
    cents,
    st.integers(-5, 400),
    st.decimals(min_value=Decimal("0.5"), max_value=Decimal(5), places=2),
    st.one_of(st.none(), cents),
)
def test_percent_late_fee_grows_per_started_month_up_to_its_cap(
    balance: Decimal, days: int, percent: Decimal, cap: Decimal | None
) -> None:
    fee = late_fee(
        balance, "EUR", kind="percent_per_month", days_overdue=days, percent=percent, cap=cap
    )
    assert fee.as_tuple().exponent == -2
    if days <= 0:
        assert fee == 0
        return
    months = (days + 29) // 30
    expected = balance * percent / 100 * months
    if cap is not None:
        expected = min(expected, cap)
    assert abs(fee - expected) <= Decimal("0.005")
    later = late_fee(
        balance, "EUR", kind="percent_per_month", days_overdue=days + 30, percent=percent, cap=cap
    )
    assert later >= fee


def test_flat_late_fee_and_jpy_rounding() -> None:
    assert late_fee(
        Decimal(100), "EUR", kind="flat", days_overdue=1, amount=Decimal(40)
    ) == Decimal("40.00")
    assert late_fee(
        Decimal(100), "EUR", kind="flat", days_overdue=1, amount=Decimal(40), cap=Decimal(25)
    ) == Decimal("25.00")
    assert (
        str(
            late_fee(
                Decimal(1001),
                "JPY",
                kind="percent_per_month",
                days_overdue=31,
                percent=Decimal("1.5"),
            )
        )
        == "30"
    )
    with pytest.raises(ValueError, match="unknown late fee kind"):
        late_fee(Decimal(1), "EUR", kind="weekly", days_overdue=3)
