"""Business hours in an account's time zone: when a step may go out, when to wake up."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

from dunning_svc.policy import BusinessHours


@cache
def zone_of(name: str) -> ZoneInfo:
    """The time zone named ``name`` (parsed once per process)."""
    return ZoneInfo(name)


def local_date(now: datetime, timezone: str) -> date:
    """``now`` as a date in the time zone named ``timezone``."""
    # Asked several times per account decided, mostly at one ``now`` and a few zones.
    # ``now``'s tzinfo and fold are in the key: equality of datetimes ignores them.
    return _local_date(now, now.tzinfo, now.fold, timezone)


@lru_cache(maxsize=4096)
def _local_date(now: datetime, _tzinfo: object, _fold: int, timezone: str) -> date:
    return now.astimezone(zone_of(timezone)).date()


def opening(day: date, zone: ZoneInfo, hours: BusinessHours) -> datetime:
    """The first opening of business hours on ``day`` or the next business day, in UTC."""
    return _opening(day, zone, hours.start, hours.weekdays)


# Keyed on what the answer depends on (not on the policy: a new version with the same
# hours shares the answers); a sweep asks for the same few days of the same zones.
@lru_cache(maxsize=8192)
def _opening(day: date, zone: ZoneInfo, start: time, open_days: frozenset[int]) -> datetime:
    for offset in range(8):
        candidate = day + timedelta(days=offset)
        if candidate.weekday() in open_days:
            return datetime.combine(candidate, start, zone).astimezone(UTC)
    raise AssertionError("business hours have at least one day")  # pragma: no cover


def next_open(now: datetime, zone: ZoneInfo, hours: BusinessHours) -> datetime:
    """``now`` if it is within business hours in ``zone``, else the next opening."""
    # A sweep decides every account at one ``now``: the answer per zone is cached. The
    # key holds ``now``'s tzinfo and fold, which equality ignores but which tell apart
    # the texts of equal instants (the answer may be ``now`` itself).
    return _next_open(now, now.tzinfo, now.fold, zone, hours.start, hours.end, hours.weekdays)


@lru_cache(maxsize=4096)
def _next_open(
    now: datetime,
    _tzinfo: object,
    _fold: int,
    zone: ZoneInfo,
    start: time,
    end: time,
    open_days: frozenset[int],
) -> datetime:
    return next_open_computed(now, zone, start, end, open_days)


def next_open_computed(
    now: datetime, zone: ZoneInfo, start: time, end: time, open_days: frozenset[int]
) -> datetime:
    """``next_open`` worked out from scratch (what the cache holds)."""
    local = now.astimezone(zone)
    if local.weekday() in open_days and start <= local.time() < end:
        return now
    if local.weekday() in open_days and local.time() < start:
        return _opening(local.date(), zone, start, open_days)
    return _opening(local.date() + timedelta(days=1), zone, start, open_days)
