"""Exact money: errors name the field and say why."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from dunning_events.money import MINOR_UNITS, Money, NonNegativeMoney, PositiveMoney, quantize


class Priced(BaseModel):
    price: PositiveMoney
    balance: NonNegativeMoney | None = None


def error_of(**fields: object) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        Priced.model_validate(fields)
    [err] = info.value.errors()
    return ".".join(str(p) for p in err["loc"]), err["msg"]


def test_more_decimals_than_the_currency_has() -> None:
    assert error_of(price={"amount": "10.001", "currency": "EUR"}) == (
        "price.amount",
        "Value error, EUR allows at most 2 decimal places",
    )
    assert error_of(price={"amount": "10.5", "currency": "JPY"})[1].endswith(
        "JPY allows at most 0 decimal places"
    )
    assert Priced.model_validate({"price": {"amount": "1.125", "currency": "BHD"}})


def test_floats_unknown_currencies_and_non_numbers_are_refused() -> None:
    assert "not floats" in error_of(price={"amount": 10.5, "currency": "EUR"})[1]
    assert error_of(price={"amount": "10", "currency": "EURO"}) == (
        "price.currency",
        "Value error, 'EURO' is not an ISO 4217 currency code",
    )
    assert "not a decimal amount" in error_of(price={"amount": "ten", "currency": "EUR"})[1]
    assert "finite" in error_of(price={"amount": "Infinity", "currency": "EUR"})[1]


def test_zero_and_negative_where_positive_is_needed() -> None:
    assert error_of(price={"amount": "0", "currency": "EUR"}) == (
        "price",
        "Value error, must be greater than zero",
    )
    assert error_of(
        price={"amount": "1", "currency": "EUR"}, balance={"amount": "-1", "currency": "EUR"}
    ) == ("balance", "Value error, must not be negative")


@given(
    st.sampled_from(sorted(MINOR_UNITS)),
    st.decimals(min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False, places=4),
)
def test_quantized_amounts_are_valid_and_serialise_as_plain_strings(
    currency: str, raw: Decimal
) -> None:
    amount = quantize(raw, currency)
    money = Money(amount=amount, currency=currency)
    dumped = money.model_dump(mode="json")
    assert dumped["amount"] == format(amount, "f")
    assert "E" not in dumped["amount"]
    assert Money.model_validate(dumped) == money
