"""Exact money: Decimal amounts with an ISO 4217 currency, never floats (principle 7).

The same types validate event payloads and, in the services, HTTP request
bodies, so every error names the rule that was broken ("EUR allows at most 2
decimal places") and pydantic adds the field path.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

# Active ISO 4217 codes (list one, as published by SIX in 2026) grouped by their
# minor units, i.e. the decimal places an amount may have. Left out on purpose:
# the codes whose minor unit is "N.A." (precious metals XAU/XAG/XPD/XPT, the
# bond-market units XBA-XBD, XDR, XSU, XUA, XAD, and the XTS/XXX placeholders),
# because an invoice cannot be expressed in them, and withdrawn codes such as
# ANG (now XCG), BGN (now EUR), HRK, SLL and ZWL.
_CODES_BY_MINOR_UNITS = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP "
        "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB "
        "EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES "
        "KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR "
        "MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD "
        "RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP "
        "TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}

#: Every accepted currency code and its minor units (JPY 0, EUR 2, BHD 3, CLF 4).
MINOR_UNITS: dict[str, int] = {
    code: units for units, codes in _CODES_BY_MINOR_UNITS.items() for code in codes.split()
}

#: Amounts have at most this many digits before the decimal point (below 10**15) and
#: after it; 15 + 12 = 27 digits keeps the sum of two amounts exact in Python's
#: default 28-digit decimal context, so no arithmetic on them rounds silently.
MAX_INTEGER_DIGITS = 15
MAX_FRACTION_DIGITS = 12

# What an amount looks like on the wire: plain fixed-point, optional minus sign,
# no exponent, no "+", no spaces, no thousands separators.
_AMOUNT_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# Leading zeros are not significant digits: "007.50" is accepted, so the schema says so.
_AMOUNT_PATTERN = rf"^-?0*[0-9]{{1,{MAX_INTEGER_DIGITS}}}(\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?$"
_NON_NEGATIVE_PATTERN = _AMOUNT_PATTERN.replace("^-?", "^")
# Positive: non-negative and not all zeros (ECMA-262 and Python both know lookaheads).
_POSITIVE_PATTERN = _NON_NEGATIVE_PATTERN.replace("^", r"^(?!0+(\.0+)?$)", 1)

_FLOAT_MESSAGE = 'amounts must be decimal strings like "1250.00", not floats'


class UnknownCurrencyError(ValueError):
    """A code that is not an active ISO 4217 currency with decimal minor units."""

    def __init__(self, code: object) -> None:
        super().__init__(f"{code!r} is not an ISO 4217 currency code")
        self.code = code


def minor_units(currency: str) -> int:
    """Decimal places of ``currency``: 0 for JPY, 2 for EUR, 3 for BHD, 4 for CLF.

    Raises ``UnknownCurrencyError`` (a ``ValueError``) for a code not in the table.
    """
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise UnknownCurrencyError(currency) from None


def quantize(amount: Decimal, currency: str, *, rounding: str = ROUND_HALF_UP) -> Decimal:
    """``amount`` rounded to exactly the currency's decimal places.

    ``quantize(Decimal("5"), "EUR")`` is ``Decimal("5.00")``; ``quantize(Decimal("2.345"),
    "EUR")`` is ``Decimal("2.35")``: commercial rounding (half up) unless ``rounding``
    names another ``decimal`` rounding mode, e.g. ``ROUND_HALF_EVEN`` or ``ROUND_DOWN``.
    """
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=rounding)


def check_places(amount: Decimal, currency: str) -> Decimal:
    """``amount`` unchanged if it has no more decimal places than ``currency`` allows.

    Raises ``ValueError("EUR allows at most 2 decimal places")`` otherwise. Trailing
    zeros count ("10.500" is refused for EUR): the HTTP contract rejects amounts
    written with more decimals than the currency has, whatever their value.
    """
    places = minor_units(currency)
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        unit = "place" if places == 1 else "places"
        raise ValueError(f"{currency} allows at most {places} decimal {unit}")
    return amount


#: The largest amount an API accepts, in major units: 10**12 (a trillion) of any currency.
#: In minor units that is at most 10**16 (CLF, 4 places), far below a 64-bit integer
#: column's 9.2 * 10**18, so any sum of a few hundred stored amounts stays exact too.
MAX_MONEY = Decimal(10) ** 12


def check_money(amount: Decimal, currency: str) -> Decimal:
    """``amount`` unchanged if it fits ``currency``'s places and is below ``MAX_MONEY``.

    Raises ``ValueError`` naming the broken rule otherwise (a 422 at the HTTP edge).
    """
    check_places(amount, currency)
    if abs(amount) >= MAX_MONEY:
        raise ValueError(f"amounts must be below 10^12 ({MAX_MONEY:,} {currency})")
    return amount


def to_minor(amount: Decimal, currency: str) -> int:
    """``Decimal("12.34")`` EUR as ``1234``: an integer of the currency's minor unit.

    Exact: raises ``ValueError`` if ``amount`` has more places than ``currency`` allows.
    """
    return int(check_places(amount, currency).scaleb(minor_units(currency)))


def from_minor(minor: int, currency: str) -> Decimal:
    """``1234`` EUR as ``Decimal("12.34")``, with exactly the currency's places."""
    places = minor_units(currency)
    return Decimal(minor).scaleb(-places).quantize(Decimal(1).scaleb(-places))


def _check_currency(value: str) -> str:
    if value not in MINOR_UNITS:
        raise UnknownCurrencyError(value)
    return value


def _to_decimal(value: Any) -> Decimal:
    """Accept an amount as the contract writes it: a decimal string (or, from Python, a Decimal).

    JSON numbers are refused, integers included: the contract (DESIGN.md, the JSON
    Schemas) says amounts are strings, and a body that sends ``2681`` where every
    document says ``"2681.00"`` would work here and break at the next consumer that
    trusts the schema.
    """
    if type(value) is str:
        # The wire's case first (every decoded amount): the match gives the places.
        match = _AMOUNT_TEXT.fullmatch(value)
        if match is not None:
            fraction = match.group(1)
            return _bounded(Decimal(value), len(fraction) - 1 if fraction else 0)
    # Floats are refused: 0.1 + 0.2 is not how a ledger adds, and a float that
    # reached us may already have lost the cents it was meant to carry.
    if isinstance(value, float):
        raise ValueError(_FLOAT_MESSAGE)
    if isinstance(value, bool):  # an int subclass; True is not an amount
        raise ValueError('amounts must be decimal strings like "1250.00"')
    if isinstance(value, int):
        # The number itself as the example, unless it is too long to be one.
        example = f"{value}.00" if abs(value) < 10**MAX_INTEGER_DIGITS else "1250.00"
        raise ValueError(f'amounts must be decimal strings like "{example}", not numbers')
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("amounts must be finite numbers, not NaN or Infinity")
        result = value
    elif isinstance(value, str):
        # Decimal() itself would also take "1e3", " 7 ", "1_000", "Infinity" and "NaN";
        # the wire format is only the plain form the JSON Schemas advertise.
        if not _AMOUNT_TEXT.fullmatch(value):
            raise ValueError(f'{value[:40]!r} is not a decimal amount like "1250.00"')
        result = Decimal(value)
    else:
        raise ValueError('amounts must be decimal strings like "1250.00"')
    exponent = result.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, checked above
    return _bounded(result, -exponent)


def _bounded(result: Decimal, places: int) -> Decimal:
    """``result`` (with ``places`` decimal places) if it has no more digits than an
    amount may have, with the sign of a zero dropped."""
    if places > MAX_FRACTION_DIGITS:
        raise ValueError(f"amounts have at most {MAX_FRACTION_DIGITS} decimal places")
    if result != 0 and result.adjusted() + 1 > MAX_INTEGER_DIGITS:
        raise ValueError(f"amounts have at most {MAX_INTEGER_DIGITS} digits before the point")
    # "-0.00" and "0.00" are the same amount; only one of them goes on the wire.
    return result.copy_abs() if result.is_zero() else result


def _plain(amount: Decimal) -> str:
    """Fixed-point text, never exponent notation (``str(Decimal("1E+3"))`` is "1E+3")."""
    return format(amount, "f")


#: An active ISO 4217 code with decimal minor units, upper case ("EUR").
Currency = Annotated[
    str,
    AfterValidator(_check_currency),
    WithJsonSchema(
        {
            "type": "string",
            # The list itself, not "^[A-Z]{3}$": a schema that lets "AAA" through
            # promises clients and subscribers a currency the API refuses.
            "enum": sorted(MINOR_UNITS),
            "description": "Active ISO 4217 currency code, e.g. EUR",
        }
    ),
]

#: A decimal number without a currency (quantities, percentages, and amounts whose
#: currency is given next to them). JSON: a string such as "1250.00".
Amount = Annotated[
    Decimal,
    BeforeValidator(_to_decimal),
    PlainSerializer(_plain, return_type=str, when_used="always"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _AMOUNT_PATTERN,
            "description": 'Exact decimal number as a string, e.g. "1250.00"; never a float',
        }
    ),
]


def _positive_amount(amount: Decimal) -> Decimal:
    if amount <= 0:
        raise ValueError("must be greater than zero")
    return amount


def _percent(amount: Decimal) -> Decimal:
    if not 0 < amount <= 100:
        raise ValueError("must be greater than 0 and less than or equal to 100")
    return amount


# Range rules live in these types, not in Field(gt=...): pydantic cannot express a
# bound on a decimal string in JSON Schema and would emit a bare "gt": 0 (not a JSON
# Schema keyword) or nothing, so documents would promise more than the API accepts.

#: An ``Amount`` greater than zero (quantities, fees, disputed amounts).
PositiveAmount = Annotated[
    Amount,
    AfterValidator(_positive_amount),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _POSITIVE_PATTERN,
            "description": 'Exact decimal number greater than zero as a string, e.g. "1250.00"',
        }
    ),
]

#: A percentage above 0 and at most 100, e.g. "2" or "1.5", as a decimal string.
Percent = Annotated[
    Amount,
    AfterValidator(_percent),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": (
                rf"^(?!0+(\.0+)?$)0*(100(\.0{{1,{MAX_FRACTION_DIGITS}}})?"
                rf"|[0-9]{{1,2}}(\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?)$"
            ),
            "description": 'Percent above 0 and at most 100 as a decimal string, e.g. "2.5"',
        }
    ),
]


class Money(BaseModel):
    """An exact amount in one currency, e.g. {"currency": "EUR", "amount": "1250.00"}.

    The amount always carries exactly the currency's minor units ("1250" EUR is
    stored and sent as "1250.00"); more decimal places than that are refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Declared first so that the amount's validator can see it (pydantic
    # validates fields in order) and name it in the error.
    currency: Currency = Field(description="ISO 4217 currency code, e.g. EUR")
    amount: Amount = Field(
        description=(
            'Decimal string with exactly the currency\'s minor units, e.g. "1250.00" '
            '(EUR), "1250" (JPY), "12.500" (BHD)'
        )
    )

    @field_validator("amount")
    @classmethod
    def _fits_currency(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        currency = info.data.get("currency")
        if currency is None:
            # The currency failed its own validation; that error is reported already.
            return amount
        # Exact after check_places: quantize only adds trailing zeros here, and an
        # amount that has the currency's places already (as on the wire) is kept.
        places = MINOR_UNITS.get(currency)
        exponent = amount.as_tuple().exponent
        if places is not None and exponent == -places:
            return amount
        return quantize(check_places(amount, currency), currency)

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        """``Money.of("12.50", "EUR")`` or ``Money.of(5, "EUR")``: validated like any other input.

        Python callers may pass an int; the wire may not (amounts are strings there).
        """
        if isinstance(amount, int) and not isinstance(amount, bool):
            amount = Decimal(amount)
        return cls.model_validate({"amount": amount, "currency": currency})

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Nothing, in ``currency``."""
        return cls.of(0, currency)

    def __str__(self) -> str:
        return f"{_plain(self.amount)} {self.currency}"


def _money_schema(description: str, amount_pattern: str) -> dict[str, Any]:
    """The JSON Schema of a constrained Money: the sign rule is visible to subscribers."""
    return {
        "type": "object",
        "description": description,
        "properties": {
            "currency": {
                "type": "string",
                "enum": sorted(MINOR_UNITS),
                "description": "ISO 4217 currency code, e.g. EUR",
            },
            "amount": {
                "type": "string",
                "pattern": amount_pattern,
                "description": "Decimal string with exactly the currency's minor units",
            },
        },
        "required": ["currency", "amount"],
        "additionalProperties": False,
    }


def _non_negative(money: Money) -> Money:
    if money.amount < 0:
        raise ValueError("must not be negative")
    return money


def _positive(money: Money) -> Money:
    if money.amount <= 0:
        raise ValueError("must be greater than zero")
    return money


#: Money that is zero or more (balances, unapplied credit).
NonNegativeMoney = Annotated[
    Money,
    AfterValidator(_non_negative),
    WithJsonSchema(_money_schema("Money, zero or more", _NON_NEGATIVE_PATTERN)),
]

#: Money greater than zero (invoice and payment amounts).
PositiveMoney = Annotated[
    Money,
    AfterValidator(_positive),
    WithJsonSchema(_money_schema("Money, greater than zero", _POSITIVE_PATTERN)),
]


def distinct_currencies(amounts: list[Money]) -> list[Money]:
    """``amounts`` unchanged if no currency appears twice (balances are per currency)."""
    seen: set[str] = set()
    for money in amounts:
        if money.currency in seen:
            raise ValueError(f"{money.currency} appears twice; give one amount per currency")
        seen.add(money.currency)
    return amounts


#: One amount per currency, e.g. an account's overdue balance.
BalancesByCurrency = Annotated[list[NonNegativeMoney], AfterValidator(distinct_currencies)]
