"""Exact money: what is accepted, how it is written, and errors that name the field and say why."""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import jsonschema_rs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from dunning_events.money import (
    MINOR_UNITS,
    BalancesByCurrency,
    Money,
    NonNegativeMoney,
    PositiveMoney,
    UnknownCurrencyError,
    check_places,
    minor_units,
    quantize,
)


class Priced(BaseModel):
    """A body as an HTTP API would declare it."""

    price: PositiveMoney
    balance: NonNegativeMoney | None = None


def only_error(model: type[BaseModel], data: object) -> tuple[str, str]:
    """(field path, message) of the one error ``data`` has."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    [error] = info.value.errors()
    return ".".join(str(p) for p in error["loc"]), error["msg"]


def price_error(amount: object, currency: object = "EUR") -> tuple[str, str]:
    return only_error(Priced, {"price": {"amount": amount, "currency": currency}})


# -- the currency table ----------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "units"),
    [
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("EUR", 2),
        ("USD", 2),
        ("UYU", 2),
        ("XCG", 2),
        ("ZWG", 2),
        ("BHD", 3),
        ("KWD", 3),
        ("JOD", 3),
        ("OMR", 3),
        ("TND", 3),
        ("IQD", 3),
        ("LYD", 3),
        ("CLF", 4),
        ("UYW", 4),
    ],
)
def test_minor_units_of_the_iso_4217_table(currency: str, units: int) -> None:
    assert minor_units(currency) == units


def test_the_table_holds_only_active_codes_with_decimal_minor_units() -> None:
    assert all(re.fullmatch("[A-Z]{3}", code) for code in MINOR_UNITS)
    assert set(MINOR_UNITS.values()) == {0, 2, 3, 4}
    # Withdrawn codes and units without a decimal minor unit (gold, SDR, test code).
    for code in ("ANG", "BGN", "HRK", "SLL", "ZWL", "XAU", "XDR", "XTS", "XXX"):
        assert code not in MINOR_UNITS
    assert len(MINOR_UNITS) == 164


def test_unknown_currency_is_a_value_error_naming_the_code() -> None:
    with pytest.raises(UnknownCurrencyError, match="'EURO' is not an ISO 4217 currency code"):
        minor_units("EURO")
    assert issubclass(UnknownCurrencyError, ValueError)


# -- helpers -----------------------------------------------------------------------


def test_quantize_rounds_half_up_unless_told_otherwise() -> None:
    assert quantize(Decimal("5"), "EUR") == Decimal("5.00")
    assert str(quantize(Decimal("5"), "EUR")) == "5.00"
    assert quantize(Decimal("2.345"), "EUR") == Decimal("2.35")
    assert quantize(Decimal("2.345"), "EUR", rounding=ROUND_HALF_EVEN) == Decimal("2.34")
    assert quantize(Decimal("2.349"), "EUR", rounding=ROUND_DOWN) == Decimal("2.34")
    assert quantize(Decimal("1249.5"), "JPY") == Decimal("1250")
    assert str(quantize(Decimal("1.2"), "BHD")) == "1.200"


def test_check_places_counts_written_decimals() -> None:
    assert check_places(Decimal("10.50"), "EUR") == Decimal("10.50")
    with pytest.raises(ValueError, match=r"^EUR allows at most 2 decimal places$"):
        check_places(Decimal("10.500"), "EUR")
    with pytest.raises(ValueError, match=r"^JPY allows at most 0 decimal places$"):
        check_places(Decimal("10.0"), "JPY")


def test_money_of_zero_and_str() -> None:
    assert Money.of("12.5", "EUR") == Money(amount=Decimal("12.50"), currency="EUR")
    assert Money.zero("JPY").model_dump(mode="json") == {"currency": "JPY", "amount": "0"}
    assert str(Money.of(1250, "EUR")) == "1250.00 EUR"


# -- accepted input and the wire form --------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "wire"),
    [
        ("1250.00", "EUR", "1250.00"),
        ("1250", "EUR", "1250.00"),  # minor units are always written out
        (Decimal("12.5"), "EUR", "12.50"),
        (Decimal("1E+3"), "EUR", "1000.00"),  # never exponent notation
        ("1250", "JPY", "1250"),
        ("12.5", "BHD", "12.500"),
        ("0.0001", "CLF", "0.0001"),
        ("-0.00", "EUR", "0.00"),  # one zero on the wire
        ("999999999999999.99", "EUR", "999999999999999.99"),
        ("-20.00", "EUR", "-20.00"),  # plain Money may be negative (a credit)
    ],
)
def test_amounts_are_written_as_plain_strings_with_the_currencys_places(
    amount: object, currency: str, wire: str
) -> None:
    money = Money.model_validate({"amount": amount, "currency": currency})
    assert money.model_dump(mode="json") == {"currency": currency, "amount": wire}
    assert money.model_dump_json() == f'{{"currency":"{currency}","amount":"{wire}"}}'


# -- refused input, with the message an HTTP client would see ----------------------


@pytest.mark.parametrize(
    ("amount", "currency", "places"),
    [
        ("10.001", "EUR", 2),
        ("10.500", "EUR", 2),  # trailing zeros count: the HTTP contract says so
        ("10.5", "JPY", 0),
        ("1.1255", "BHD", 3),
        ("1.00001", "CLF", 4),
    ],
)
def test_more_decimals_than_the_currency_has(amount: str, currency: str, places: int) -> None:
    assert price_error(amount, currency) == (
        "price.amount",
        f"Value error, {currency} allows at most {places} decimal places",
    )


@pytest.mark.parametrize("amount", [10.5, 10.0, float("nan"), float("inf")])
def test_floats_are_refused(amount: float) -> None:
    assert price_error(amount) == (
        "price.amount",
        'Value error, amounts must be decimal strings like "1250.00", not floats',
    )


NOT_AMOUNTS = ["NaN", "Infinity", "-inf", "1e3", "1E-2", " 10", "10 ", "1_000", "1,000.00"]
NOT_AMOUNTS += ["+5", ".5", "5.", "", "ten", "0x10"]


@pytest.mark.parametrize("amount", NOT_AMOUNTS)
def test_only_plain_decimal_strings_are_amounts(amount: str) -> None:
    field, message = price_error(amount)
    assert field == "price.amount"
    assert message == f'Value error, {amount!r} is not a decimal amount like "1250.00"'


def test_other_non_amounts_are_refused() -> None:
    not_finite = "Value error, amounts must be finite numbers, not NaN or Infinity"
    assert price_error(Decimal("NaN"))[1] == not_finite
    assert price_error(Decimal("-Infinity"))[1] == not_finite
    assert price_error(True)[1] == 'Value error, amounts must be decimal strings like "1250.00"'
    assert price_error(None)[1] == 'Value error, amounts must be decimal strings like "1250.00"'
    too_big = ("price.amount", "Value error, amounts have at most 15 digits before the point")
    assert price_error("1" * 16) == too_big
    assert price_error(Decimal(10**15)) == too_big
    # A JSON number, even a whole one, is not the contract's amount.
    assert price_error(1250)[1] == (
        'Value error, amounts must be decimal strings like "1250.00", not numbers'
    )
    assert price_error(-7)[1] == (
        'Value error, amounts must be decimal strings like "-7.00", not numbers'
    )
    # A number too long to quote is not echoed back.
    assert price_error(10**400)[1] == (
        'Value error, amounts must be decimal strings like "1250.00", not numbers'
    )


@pytest.mark.parametrize("currency", ["EURO", "eur", "XAU", "ANG", "", "XYZ"])
def test_unknown_currencies_are_refused(currency: str) -> None:
    assert price_error("10.00", currency) == (
        "price.currency",
        f"Value error, {currency!r} is not an ISO 4217 currency code",
    )


def test_unknown_fields_and_missing_fields_are_refused() -> None:
    assert only_error(Money, {"amount": "1.00", "currency": "EUR", "cents": 100}) == (
        "cents",
        "Extra inputs are not permitted",
    )
    assert only_error(Money, {"amount": "1.00"}) == ("currency", "Field required")


def test_zero_or_negative_where_a_positive_amount_is_needed() -> None:
    assert price_error("0.00") == ("price", "Value error, must be greater than zero")
    assert price_error("-5.00") == ("price", "Value error, must be greater than zero")
    assert only_error(
        Priced, {"price": Money.of(1, "EUR"), "balance": {"amount": "-0.01", "currency": "EUR"}}
    ) == ("balance", "Value error, must not be negative")
    smallest = Priced(price=Money.of("0.01", "EUR"), balance=Money.zero("EUR"))
    assert smallest.price.amount == Decimal("0.01") and smallest.balance == Money.zero("EUR")


def test_balances_by_currency_refuse_a_currency_twice() -> None:
    adapter = TypeAdapter(BalancesByCurrency)
    assert adapter.validate_python([Money.of(1, "EUR"), Money.of(2, "USD")])
    with pytest.raises(ValidationError, match="EUR appears twice; give one amount per currency"):
        adapter.validate_python([Money.of(1, "EUR"), Money.of(2, "EUR")])


# -- properties --------------------------------------------------------------------

currencies = st.sampled_from(sorted(MINOR_UNITS))
decimals = st.decimals(
    min_value=Decimal("-999999999999999"),
    max_value=Decimal("999999999999999"),
    allow_nan=False,
    allow_infinity=False,
    places=4,
)


@given(currencies, decimals)
def test_any_quantized_amount_round_trips_as_a_plain_string(currency: str, raw: Decimal) -> None:
    amount = quantize(raw, currency)
    money = Money(amount=amount, currency=currency)
    wire = money.model_dump(mode="json")["amount"]
    places = minor_units(currency)
    assert re.fullmatch(rf"-?[0-9]+\.[0-9]{{{places}}}" if places else "-?[0-9]+", wire)
    assert Decimal(wire) == amount
    assert Money.model_validate_json(money.model_dump_json()) == money


@given(currencies, decimals)
def test_an_amount_is_accepted_exactly_when_it_fits_the_currency(
    currency: str, raw: Decimal
) -> None:
    fits = -int(raw.as_tuple().exponent) <= minor_units(currency)
    try:
        Money.of(str(raw), currency)
    except ValidationError as exc:
        assert not fits
        assert f"{currency} allows at most {minor_units(currency)} decimal" in str(exc)
    else:
        assert fits


amount_texts = st.from_regex(r"-?[0-9]{1,16}(\.[0-9]{1,3})?", fullmatch=True) | st.text(max_size=8)


@given(amount_texts)
@example("0\n")  # once drawn at random: passed python-jsonschema, refused by the validator
def test_the_json_schemas_agree_with_the_validators(text: str) -> None:
    """What we write passes the published schema, and what passes it we read.

    Checked with jsonschema-rs, which reads ``pattern`` as ECMA-262 as JSON Schema says:
    there ``$`` is the end of the string. python-jsonschema uses ``re.search``, where
    ``$`` also matches before a final newline, so it let ``"0\n"`` through a pattern
    no conforming validator (nor ours) accepts (docs/events.md says so to subscribers).
    """
    for money_type in (Money, PositiveMoney, NonNegativeMoney):
        adapter = TypeAdapter(money_type)
        schema = jsonschema_rs.Draft202012Validator(adapter.json_schema(mode="serialization"))
        document = {"currency": "EUR", "amount": text}
        try:
            money = adapter.validate_python(document)
        except ValidationError as exc:
            # The schema cannot know each currency's places; that rule is the validators'.
            assert not schema.is_valid(document) or "allows at most" in str(exc), (money_type, text)
        else:
            assert schema.is_valid(adapter.dump_python(money, mode="json")), (money_type, text)
