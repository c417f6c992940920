"""The core's fast paths against the code they replaced, on random inputs: the policy's
cached lookups (per policy version, dropped by ``model_copy``) and notices built without
``model_construct``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from test_dunning_properties import STANDARD, START, journeys

from dunning_events import DunningStageChanged, NoticeInvoice, NotificationRequested
from dunning_svc.core import CURRENT, Account, decide
from dunning_svc.core.calendar import opening, zone_of
from dunning_svc.core.notices import NextStep, next_step
from dunning_svc.policy import WEEKDAYS, BusinessHours, Policy, Step, shipped_policy


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """A valid policy: maybe a reminder, then 1-8 steps by days past due."""
    count = draw(st.integers(1, 8))
    days = sorted(draw(st.sets(st.integers(1, 3650), min_size=count, max_size=count)))
    steps: list[dict[str, Any]] = []
    if draw(st.booleans()):
        steps.append(
            {
                "stage": "reminder",
                "days_before_due": draw(st.integers(1, 90)),
                "channels": ["email"],
            }
        )
    for index, day in enumerate(days):
        actions = draw(st.lists(st.sampled_from(["call_task", "credit_hold"]), unique=True))
        if index == count - 1 and draw(st.booleans()):
            actions.append("handoff")
        channels = st.sampled_from(["email", "sms", "webhook"])
        steps.append(
            {
                "stage": draw(st.sampled_from(["overdue", "late", "step"])) + f"_{index}",
                "days_past_due": day,
                "channels": draw(st.lists(channels, unique=True, min_size=0 if actions else 1)),
                "actions": actions,
            }
        )
    open_days = draw(st.lists(st.sampled_from(WEEKDAYS), unique=True, min_size=1))
    return Policy.model_validate(
        {
            "segment": "random",
            "steps": steps,
            "business_hours": {"days": open_days},
            "escalation_contact": {"from_stage": steps[-1]["stage"]},
        }
    )


def old_next_step(policy: Policy, step: Step) -> NextStep | None:
    """``next_step`` as it was, before the policy cached what follows each stage."""
    later = [s for s in policy.ladder if policy.rank(s.stage) > policy.rank(step.stage)]
    if not later:
        return None
    nxt = later[0]
    gap = max(0, (nxt.days_past_due or 0) - (step.days_past_due or 0))
    what = (
        "handoff to a collection agency"
        if "handoff" in nxt.actions
        else nxt.stage.replace("_", " ")
    )
    return NextStep(nxt.stage, gap, f"{what} in {gap} days")


@settings(max_examples=200, deadline=None)
@given(
    policies()
    | st.sampled_from([shipped_policy(s) for s in ("standard", "strategic", "high_risk")])
)
def test_the_cached_lookups_answer_what_the_computations_did(policy: Policy) -> None:
    for rank in range(-1, len(policy.steps) + 1):
        done = [s.stage for s in policy.steps if policy.rank(s.stage) <= rank]
        assert list(policy.stages[: rank + 1]) == done
        skipped = [s.stage for s in policy.ladder if policy.rank(s.stage) < rank]
        assert [s for s, r in policy.ladder_ranks if r < rank] == skipped
    for step in policy.steps:
        assert next_step(policy, step) == old_next_step(policy, step)
        channels = [*step.channels, *(["task"] if "call_task" in step.actions else [])]
        assert list(step.notice_channels) == channels
    assert policy.following.get("unknown") is None
    assert policy.following.get(CURRENT) == policy.ladder[0]
    hours = policy.business_hours
    assert hours.weekdays == frozenset(WEEKDAYS.index(d) for d in hours.days)


@settings(max_examples=50, deadline=None)
@given(policies(), policies())
def test_a_copy_of_a_policy_computes_its_own_lookups(first: Policy, second: Policy) -> None:
    assert first.stages and first.following is not None and first.business_hours.weekdays
    copied = first.model_copy(update={"steps": second.steps, "version": 7})
    assert copied.stages == tuple(s.stage for s in second.steps)
    assert copied.ladder == second.ladder and copied.ranks == second.ranks
    assert copied.following == second.following
    hours = first.business_hours.model_copy(update={"days": ["sun"]})
    assert hours.weekdays == frozenset({6})
    # The caches are no part of a policy's value: a retried PUT still finds it the same.
    assert first.model_copy() == first and first.model_copy(update={"version": 3}) != first


def same_as_constructed(model: BaseModel) -> None:
    """``model`` is exactly what ``model_construct`` builds from its values."""
    constructed = type(model).model_construct(**dict(model.__dict__))
    assert list(model.__dict__.items()) == list(constructed.__dict__.items())
    assert model.model_fields_set == constructed.model_fields_set
    assert model.__pydantic_extra__ == constructed.__pydantic_extra__
    assert model.__pydantic_private__ == constructed.__pydantic_private__
    assert model.model_dump_json() == constructed.model_dump_json()


@settings(max_examples=100, deadline=None)
@given(journeys())
def test_notices_and_stage_changes_are_built_as_model_construct_built_them(
    journey: list[tuple[int, Any]],
) -> None:
    account = Account("acme", "ACME-42")
    for hours, input in journey:
        try:
            account, commands, _ = decide(account, input, STANDARD, START + timedelta(hours=hours))
        except ValueError:
            continue
        for change in (c for c in commands if isinstance(c, DunningStageChanged)):
            same_as_constructed(change)
            assert DunningStageChanged.model_validate_json(change.model_dump_json()) == change
        for notice in (c for c in commands if isinstance(c, NotificationRequested)):
            same_as_constructed(notice)
            for listed in notice.invoices:
                assert isinstance(listed, NoticeInvoice)
                same_as_constructed(listed)
            assert type(notice).model_validate_json(notice.model_dump_json()) == notice


def test_the_shipped_policy_is_cached_once() -> None:
    assert shipped_policy("standard").following is shipped_policy("standard").following


def old_opening(day: date, zone: ZoneInfo, hours: BusinessHours) -> datetime:
    """``opening`` as it was, before its answers were cached."""
    for offset in range(8):
        candidate = day + timedelta(days=offset)
        if candidate.weekday() in hours.weekdays:
            return datetime.combine(candidate, hours.start, zone).astimezone(UTC)
    raise AssertionError("no open day")


@settings(max_examples=300, deadline=None)
@given(
    st.dates(date(2020, 1, 1), date(2040, 12, 31)),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    st.lists(st.sampled_from(WEEKDAYS), unique=True, min_size=1),
    st.times(),
)
def test_a_cached_opening_is_the_computed_one(
    day: date, zone: str, days: list[str], start: time
) -> None:
    hours = BusinessHours.model_validate({"days": days, "start": start, "end": time.max})
    if hours.start >= hours.end:
        return
    assert opening(day, zone_of(zone), hours) == old_opening(day, zone_of(zone), hours)
    # A policy version with other hours is never answered from the first one's.
    other = hours.model_copy(update={"days": ["sun"]})
    assert opening(day, zone_of(zone), other) == old_opening(day, zone_of(zone), other)
