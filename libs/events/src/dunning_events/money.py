"""Exact money: Decimal amounts with an ISO 4217 currency, never floats (principle 7)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

# Active ISO 4217 codes and their minor units (decimal places), grouped by units.
_MINOR_UNITS_TABLE = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
    2: (
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
        "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB "
        "EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS "
        "KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN "
        "MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD "
        "SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS "
        "UAH USD USN UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
    ),
}
MINOR_UNITS: dict[str, int] = {
    code: units for units, codes in _MINOR_UNITS_TABLE.items() for code in codes.split()
}


def minor_units(currency: str) -> int:
    """Decimal places of ``currency`` (KeyError for an unknown code)."""
    return MINOR_UNITS[currency]


def quantize(amount: Decimal, currency: str) -> Decimal:
    """``amount`` with exactly the currency's decimal places (``Decimal("5")`` -> ``5.00``)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)))


def _check_currency(value: str) -> str:
    if value not in MINOR_UNITS:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return value


def _to_decimal(value: Any) -> Decimal:
    # Floats are refused: 0.1 + 0.2 is not how a ledger adds.
    if isinstance(value, (bool, float)):
        raise ValueError('amounts must be decimal strings like "1250.00", not floats')
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal amount") from None
    else:
        raise ValueError('amounts must be decimal strings like "1250.00"')
    if not result.is_finite():
        raise ValueError("amounts must be finite")
    return result


def _plain(amount: Decimal) -> str:
    """Fixed-point text, never exponent notation."""
    return format(amount, "f")


Currency = Annotated[
    str,
    AfterValidator(_check_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code"}),
]
Amount = Annotated[
    Decimal,
    BeforeValidator(_to_decimal),
    PlainSerializer(_plain, return_type=str, when_used="always"),
    WithJsonSchema(
        {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "description": "decimal amount"}
    ),
]


class Money(BaseModel):
    """An exact amount in one currency, e.g. ``{"amount": "1250.00", "currency": "EUR"}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The currency is validated first so the amount's check can name its places.
    currency: Currency
    amount: Amount

    @field_validator("amount")
    @classmethod
    def _fits_currency(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        currency = info.data.get("currency")
        if currency is None:
            return amount
        places = minor_units(currency)
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > places:
            unit = "place" if places == 1 else "places"
            raise ValueError(f"{currency} allows at most {places} decimal {unit}")
        return amount


def _non_negative(money: Money) -> Money:
    if money.amount < 0:
        raise ValueError("must not be negative")
    return money


def _positive(money: Money) -> Money:
    if money.amount <= 0:
        raise ValueError("must be greater than zero")
    return money


NonNegativeMoney = Annotated[Money, AfterValidator(_non_negative)]
PositiveMoney = Annotated[Money, AfterValidator(_positive)]
