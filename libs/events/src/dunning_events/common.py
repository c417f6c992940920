"""Building blocks shared by the payloads: identifiers, instants, time zones, contacts."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

__all__ = [
    "MAX_DAY",
    "MIN_DAY",
    "BoundedDay",
    "Channel",
    "Contact",
    "Day",
    "FreeText",
    "Identifier",
    "Instant",
    "Locale",
    "Part",
    "Segment",
    "Stage",
    "TimeZone",
]


@cache
def _zones() -> frozenset[str]:
    # Read once, on first use: the IANA database comes from the system or, where the
    # system has none (slim containers), from the tzdata package we depend on.
    return frozenset(available_timezones())


def _check_timezone(name: str) -> str:
    if name not in _zones():
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. 'Europe/Berlin')")
    return name


#: An IANA time zone name such as "Europe/Berlin" (validated against the tz database).
TimeZone = Annotated[
    str,
    AfterValidator(_check_timezone),
    Field(
        min_length=1,
        max_length=64,
        description="IANA time zone of the account, e.g. Europe/Berlin; business hours use it.",
    ),
]


def _whole_minute_offset(moment: datetime) -> datetime:
    offset = moment.utcoffset()
    # RFC 3339 offsets are hours and minutes; pydantic would drop the seconds of an
    # offset such as Monrovia's -00:44:30 and so move the instant. UTC keeps it exact.
    if offset is not None and (offset.seconds % 60 or offset.microseconds):
        return moment.astimezone(UTC)
    return moment


# JSON Schema 2020-12 treats "format" as an annotation that validators need not
# check, so the schemas also give the pattern of what we write.
_INSTANT_SCHEMA = {
    "type": "string",
    "format": "date-time",
    "pattern": (
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})$"
    ),
}
_DAY_SCHEMA = {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}

#: The earliest and latest calendar dates an API or an event accepts: wide enough for
#: any invoice, narrow enough that grace periods and time zones never leave
#: ``datetime``'s range (an event dated 9999-12-31 would overflow a service's date
#: arithmetic, one dated 0001-01-01 is no invoice: both are refused at decoding).
MIN_DAY = date(2000, 1, 1)
MAX_DAY = date(2199, 12, 31)


def _instant_within_range(moment: datetime) -> datetime:
    if not MIN_DAY <= moment.astimezone(UTC).date() <= MAX_DAY:
        raise ValueError(f"must be between {MIN_DAY.isoformat()} and {MAX_DAY.isoformat()}")
    return moment


#: A point in time with its UTC offset (RFC 3339 on the wire) within the years
#: 2000-2199; naive datetimes are refused.
Instant = Annotated[
    AwareDatetime,
    AfterValidator(_whole_minute_offset),
    AfterValidator(_instant_within_range),
    WithJsonSchema(_INSTANT_SCHEMA),
]


def _within_range(day: date) -> date:
    if not MIN_DAY <= day <= MAX_DAY:
        raise ValueError(f"must be between {MIN_DAY.isoformat()} and {MAX_DAY.isoformat()}")
    return day


#: A calendar date between ``MIN_DAY`` and ``MAX_DAY``, for dates an API takes as input.
BoundedDay = Annotated[
    date,
    AfterValidator(_within_range),
    WithJsonSchema(
        {
            **_DAY_SCHEMA,
            # The years 2000-2199 (MIN_DAY to MAX_DAY), so the schema refuses what we refuse.
            "pattern": r"^2[01][0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
            "description": f"A date from {MIN_DAY.isoformat()} to {MAX_DAY.isoformat()}.",
        }
    ),
]

#: A calendar date, "YYYY-MM-DD" on the wire, within the years 2000-2199 like every
#: date the APIs take.
Day = BoundedDay

_IDENTIFIER_CHARACTERS = re.compile(r"[A-Za-z0-9_.:-]+")


def _addressable(value: str) -> str:
    # An id goes into URL paths (/v1/invoices/{invoice_id}): "/" would split it, and
    # "." or ".." would be resolved away by clients and proxies before they reach us.
    if not _IDENTIFIER_CHARACTERS.fullmatch(value):
        raise ValueError("may only contain letters, digits and the characters - _ . :")
    if value in (".", ".."):
        raise ValueError('must not be "." or ".."')
    return value


#: An id given by the producer or the ERP (invoice, payment, account, plan ids):
#: 1-100 letters, digits and ``-_.:``, not "." or "..", so it can be addressed in a URL.
Identifier = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        json_schema_extra={"pattern": r"^(?!\.\.?$)[A-Za-z0-9_.:-]+$"},
    ),
    AfterValidator(_addressable),
]

# C0 controls other than tab and newline, DEL and the C1 controls.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(value: str) -> str:
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError("must not contain control characters other than newline and tab")
    return value


#: Text written by people (names, reasons, descriptions): any characters except control
#: characters other than newline and tab, which would corrupt logs, emails and CSVs.
FreeText = Annotated[
    str,
    AfterValidator(_printable),
    Field(json_schema_extra={"pattern": r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"}),
]

#: A BCP 47 language tag such as "en" or "de-DE".
Locale = Annotated[
    str,
    Field(
        pattern=r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$",
        max_length=35,
        description="BCP 47 language tag for messages, e.g. en or de-DE.",
    ),
]

#: The name of an escalation policy segment ("standard", "strategic", "high_risk").
Segment = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,50}$")]

#: A stage of an escalation policy. The standard policy's stages are current,
#: reminder, overdue_1, overdue_2, overdue_3, final_notice and collections;
#: policies are data, so other segments may name their own.
Stage = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,49}$")]

#: How a notice reaches the customer; "task" is a call task for a collector.
Channel = Literal["email", "sms", "webhook", "task"]


class Part(BaseModel):
    """Base of the nested parts of a payload: immutable, unknown fields refused."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )


class Contact(Part):
    """Who to write to about an account."""

    name: FreeText = Field(min_length=1, max_length=200, description="Person or department.")
    email: str | None = Field(
        default=None,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Email address, if the account has one.",
    )
    phone: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^\+?[0-9 ()./-]{4,31}$",
        description="Phone number, preferably E.164 (+4930123456).",
    )
