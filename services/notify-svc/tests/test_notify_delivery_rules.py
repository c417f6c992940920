"""The pure rules the consumer and the delivery worker act on: following stage changes
that arrive in any order, which pending notice a return to ``current`` makes obsolete,
who gets a copy, the retry budget and which adapter sends a channel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from notify_svc.domain import (
    RetryPolicy,
    StageSeen,
    copies_to,
    follow_stage,
    gave_up,
    obsoleted_by_return,
    route_of,
)

STAGES = ("current", "reminder", "overdue_1", "final_notice")
changes = st.lists(
    st.tuples(st.integers(min_value=1, max_value=50), st.sampled_from(STAGES)),
    min_size=1,
    max_size=12,
)


@given(changes, st.randoms())
def test_the_stage_seen_is_the_same_in_any_order_of_arrival(
    seen_changes: list[tuple[int, str]], random: Random
) -> None:
    # Sequences are unique per account: one change per sequence.
    unique = list(dict(seen_changes).items())
    shuffled = unique[:]
    random.shuffle(shuffled)
    results = []
    for order in (unique, shuffled):
        state: StageSeen | None = None
        for sequence, stage in order:
            state = follow_stage(state, sequence, stage)
        results.append(state)
    latest = max(unique)
    returns = [s for s, stage in unique if stage == "current"]
    assert results[0] == results[1]
    assert results[0] == StageSeen(latest[0], latest[1], max(returns, default=0))


def test_a_return_to_current_makes_earlier_unstarted_notices_obsolete() -> None:
    gone = obsoleted_by_return(3, "overdue_1", sending=False, current_sequence=5)
    assert gone is not None and gone.reason == "obsolete"
    assert gone.detail == (
        "requested at stage change 3 (overdue_1); the account returned to current at stage change 5"
    )
    assert obsoleted_by_return(3, "overdue_1", sending=True, current_sequence=5) is None
    assert obsoleted_by_return(5, "overdue_1", sending=False, current_sequence=5) is None
    assert obsoleted_by_return(6, "overdue_1", sending=False, current_sequence=5) is None


def test_copies_go_to_email_only_and_never_to_an_opted_out_address() -> None:
    cc = ["AP@Acme.example", None, "", "cfo@acme.example"]
    assert copies_to("email", cc, {"ap@acme.example"}) == ["cfo@acme.example"]
    assert copies_to("email", cc, set()) == ["AP@Acme.example", "cfo@acme.example"]
    assert copies_to("sms", cc, set()) == []


def test_the_retry_budget_counts_from_the_first_attempt_and_never_goes_negative() -> None:
    policy = RetryPolicy(max_s=600, backoff_s=1, backoff_max_s=60)
    first = datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert policy.budget(first, first) == 600
    assert policy.budget(first, first + timedelta(seconds=450)) == 150
    assert policy.budget(first, first + timedelta(hours=1)) == 0
    assert gave_up(4, "421 try later") == "gave up after 4 attempts: 421 try later"


def test_a_channel_goes_to_its_server_or_to_files_when_none_is_configured() -> None:
    assert route_of("email", smtp=True, sms_gateway=False) == "smtp"
    assert route_of("email", smtp=False, sms_gateway=True) == "eml_files"
    assert route_of("sms", smtp=True, sms_gateway=True) == "sms_gateway"
    assert route_of("sms", smtp=True, sms_gateway=False) == "sms_files"
    assert route_of("webhook", smtp=False, sms_gateway=False) == "webhook"
