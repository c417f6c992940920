"""The sweep core's fast paths (second pass) against the code they replaced: each cached or
integer computation against its reference on random inputs, and whole decisions on random
journeys with every fast path swapped back for its reference (the same commands, to the
byte, the same reasons and the same stored state)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from test_dunning_core_lookups import policies
from test_dunning_properties import STANDARD, START, journeys

from dunning_events.money import MINOR_UNITS, from_minor
from dunning_svc import storage
from dunning_svc.core import Account, InvoiceState, calendar, decide, ladder, notices
from dunning_svc.core import account as account_module
from dunning_svc.core.context import Decision
from dunning_svc.policy import WEEKDAYS, BusinessHours, Policy, Step, shipped_policy
from dunning_svc.storage import state

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
CURRENCIES = sorted(MINOR_UNITS)
instants = st.datetimes(datetime(2020, 1, 1), datetime(2040, 12, 31), timezones=st.just(UTC))


def old_target(d: Decision, oldest_due: date, days: int) -> Step | None:
    """``ladder._target`` as it was: a walk over the ladder."""
    target: Step | None = None
    for step in d.policy.ladder:
        assert step.days_past_due is not None
        if step.days_past_due <= days:
            target = step
        else:
            at = oldest_due + timedelta(days=step.days_past_due)
            d.wakes.append(calendar.opening(at, d.zone, d.hours))
            break
    return target


def old_below(totals: dict[str, int], threshold: Decimal) -> bool:
    """The small-balance test as it was: a ``Decimal`` per total."""
    return all(from_minor(m, c) < threshold for c, m in totals.items())


def old_totals(
    account: Account, invoices: list[InvoiceState], *, chased: bool = False
) -> dict[str, int]:
    """``Account.totals`` as it was: always sorted, through the account's lookups."""
    sums: dict[str, int] = {}
    for invoice in invoices:
        amount = account.chased_amount(invoice) if chased else account.balance(invoice)
        sums[invoice.currency] = sums.get(invoice.currency, 0) + amount
    return {c: sums[c] for c in sorted(sums)}


def computed_next_open(now: datetime, zone: ZoneInfo, hours: BusinessHours) -> datetime:
    """``next_open`` with no cache."""
    return calendar.next_open_computed(now, zone, hours.start, hours.end, hours.weekdays)


def computed_local_date(now: datetime, timezone: str) -> date:
    """``local_date`` with no cache."""
    return now.astimezone(ZoneInfo(timezone)).date()


@contextlib.contextmanager
def references() -> Iterator[None]:
    """Every fast path of the sweep core swapped for its reference."""
    with contextlib.ExitStack() as stack:
        for target, name, value in [
            (calendar, "next_open", computed_next_open),
            (ladder, "next_open", computed_next_open),
            (account_module, "local_date", computed_local_date),
            (ladder, "_target", old_target),
            (ladder, "below", old_below),
            (ladder, "next_step", notices.next_step_computed),
            (Account, "totals", old_totals),
            (state, "overdue_e4", state.overdue_e4_computed),
        ]:
            stack.enter_context(mock.patch.object(target, name, value))
        yield


def outcome(account: Account, commands: list[Any], reasons: list[str]) -> tuple[Any, ...]:
    """What a decision leaves: the commands' bytes and fields' order, the reasons, the
    stored columns."""
    today = account.local_today(START)
    return (
        [(type(c).__name__, c.model_dump_json(), list(c.__dict__)) for c in commands],
        reasons,
        storage.columns_of(account, today, START),
        account.next_action_at,
    )


@settings(max_examples=150, deadline=None)
@given(journeys(), st.sampled_from(["standard", "strategic", "high_risk"]))
def test_decisions_with_the_fast_paths_are_those_of_the_references(
    journey: list[tuple[int, Any]], segment: str
) -> None:
    policy = shipped_policy(segment)
    fast, slow = Account("acme", "ACME-42"), Account("acme", "ACME-42")
    for hours, input in journey:
        now = START + timedelta(hours=hours)
        try:
            fast, fast_commands, fast_reasons = decide(fast, input, policy, now)
        except ValueError:
            fast_commands = []
            fast_reasons = ["refused"]
        with references():
            try:
                slow, slow_commands, slow_reasons = decide(slow, input, policy, now)
            except ValueError:
                slow_commands, slow_reasons = [], ["refused"]
            slow_outcome = outcome(slow, slow_commands, slow_reasons)
        assert outcome(fast, fast_commands, fast_reasons) == slow_outcome


@settings(max_examples=300, deadline=None)
@given(
    instants,
    st.sampled_from(ZONES),
    st.sampled_from(ZONES),
    st.lists(st.sampled_from(WEEKDAYS), unique=True, min_size=1),
    st.times(),
    st.times(),
)
def test_a_cached_next_open_and_local_date_are_the_computed_ones(
    now: datetime, zone: str, seen_in: str, days: list[str], start: time, end: time
) -> None:
    if start >= end:
        start, end = time.min, time.max
    hours = BusinessHours.model_validate({"days": days, "start": start, "end": end})
    for instant in (
        now,
        now.astimezone(ZoneInfo(seen_in)),
        now.astimezone(timezone(timedelta(hours=-3))),
    ):
        # Equal instants in other time zones are cached apart: the answer may be the
        # instant itself, whose text differs.
        got = calendar.next_open(instant, calendar.zone_of(zone), hours)
        expected = computed_next_open(instant, calendar.zone_of(zone), hours)
        assert got == expected and got.isoformat() == expected.isoformat()
        assert calendar.local_date(instant, zone) == computed_local_date(instant, zone)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(CURRENCIES), st.integers(0, 10**15), max_size=4),
    st.decimals(Decimal(0), Decimal(10**6), places=4) | st.sampled_from([Decimal("5"), 0]),
)
def test_thresholds_and_overdue_e4_in_minor_units_are_the_decimal_ones(
    totals: dict[str, int], threshold: Decimal
) -> None:
    threshold = Decimal(threshold)
    assert ladder.below(totals, threshold) == old_below(totals, threshold)
    assert state.overdue_e4(totals) == state.overdue_e4_computed(totals)


@settings(max_examples=200, deadline=None)
@given(
    policies()
    | st.sampled_from([shipped_policy(s) for s in ("standard", "strategic", "high_risk")]),
    st.integers(-5, 4000),
)
def test_the_target_by_bisection_is_the_walked_one(policy: Policy, days: int) -> None:
    account = Account("acme", "ACME-42", timezone="Europe/Berlin")
    fast, slow = (Decision(account, policy, START, date(2026, 3, 1)) for _ in range(2))
    due = date(2026, 1, 15)
    assert ladder._target(fast, due, days) == old_target(slow, due, days)
    assert fast.wakes == slow.wakes
    for step in policy.steps:
        assert notices.next_step(policy, step) == notices.next_step_computed(policy, step)


def test_a_copy_of_a_policy_has_a_memo_of_its_own() -> None:
    policy = STANDARD.model_copy(update={"version": 9})
    notices.next_step(policy, policy.ladder[0])
    assert policy.memo and policy.model_copy().memo == {}
    assert policy.ladder_days == tuple(s.days_past_due for s in policy.ladder)
