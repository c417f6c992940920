"""Building blocks shared by the payloads: identifiers, instants, time zones, contacts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

__all__ = [
    "Channel",
    "Contact",
    "Day",
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

#: A point in time with its UTC offset (RFC 3339 on the wire); naive datetimes are refused.
Instant = Annotated[
    AwareDatetime, AfterValidator(_whole_minute_offset), WithJsonSchema(_INSTANT_SCHEMA)
]

#: A calendar date, "YYYY-MM-DD" on the wire.
Day = Annotated[date, WithJsonSchema(_DAY_SCHEMA)]

#: An id given by the producer or the ERP (invoice, payment, promise, plan ids).
Identifier = Annotated[str, Field(min_length=1, max_length=100)]

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

    name: str = Field(min_length=1, max_length=200, description="Person or department.")
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
