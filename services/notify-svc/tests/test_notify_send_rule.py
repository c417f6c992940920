"""The send-time rule (``domain.at_send_time``) as properties: whatever the account's
sent notices, a notice that is sent never follows a later stage's notice and never
comes within the cap of another chase, and a held notice is due exactly when the
rule lets it go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from notify_svc.domain import ContactMade, Hold, Send, Superseded, at_send_time

BASE = datetime(2026, 3, 2, 9, tzinfo=UTC)
STAGES = ("current", "reminder", "overdue_1", "overdue_2", "final_notice")

instants = st.integers(min_value=0, max_value=40 * 24).map(lambda h: BASE + timedelta(hours=h))
contacts = st.builds(
    ContactMade,
    stage_sequence=st.integers(min_value=0, max_value=6),
    stage=st.sampled_from(STAGES),
    at=instants,
    in_flight=st.booleans(),
)
notices = st.fixed_dictionaries(
    {
        "stage_sequence": st.integers(min_value=0, max_value=6),
        "stage": st.sampled_from(STAGES[1:]),
        "not_before": st.none() | instants,
        "contact_cap_days": st.integers(min_value=0, max_value=10),
        "contacts": st.lists(contacts, max_size=6),
        "now": instants,
    }
)

rule = settings(max_examples=200, derandomize=True, deadline=None)


def others(notice: dict[str, object]) -> list[ContactMade]:
    made = notice["contacts"]
    assert isinstance(made, list)
    moment = (notice["stage_sequence"], notice["stage"])
    return [c for c in made if (c.stage_sequence, c.stage) != moment]


@rule
@given(notices)
def test_a_notice_sent_follows_no_later_stage_and_respects_the_cap(
    notice: dict[str, object],
) -> None:
    decision = at_send_time(**notice)  # type: ignore[arg-type]
    if not isinstance(decision, Send):
        return
    now = notice["now"]
    assert isinstance(now, datetime)
    cap = timedelta(days=notice["contact_cap_days"])  # type: ignore[arg-type]
    for contact in others(notice):
        if not contact.in_flight:
            assert contact.stage_sequence <= notice["stage_sequence"]  # type: ignore[operator]
        if contact.stage != "current" and cap:
            assert now >= contact.at + cap
    assert notice["not_before"] is None or now >= notice["not_before"]  # type: ignore[operator]


@rule
@given(notices)
def test_a_notice_is_superseded_exactly_when_a_later_stages_notice_went_out(
    notice: dict[str, object],
) -> None:
    decision = at_send_time(**notice)  # type: ignore[arg-type]
    later = [
        c
        for c in others(notice)
        if not c.in_flight and c.stage_sequence > notice["stage_sequence"]  # type: ignore[operator]
    ]
    assert isinstance(decision, Superseded) == bool(later)


@rule
@given(notices)
def test_a_held_notice_is_sent_when_its_hold_ends(notice: dict[str, object]) -> None:
    decision = at_send_time(**notice)  # type: ignore[arg-type]
    if not isinstance(decision, Hold):
        return
    assert decision.until > notice["now"]  # type: ignore[operator]
    assert decision.why
    # Nothing else went out meanwhile: at the end of the hold it goes, not a moment before.
    assert isinstance(at_send_time(**{**notice, "now": decision.until}), Send)  # type: ignore[arg-type]
    before = decision.until - timedelta(seconds=1)
    if before >= notice["now"]:  # type: ignore[operator]
        assert isinstance(at_send_time(**{**notice, "now": before}), Hold)  # type: ignore[arg-type]


@rule
@given(notices, st.data())
def test_the_notices_of_its_own_contact_moment_neither_order_nor_cap_it(
    notice: dict[str, object], data: st.DataObject
) -> None:
    siblings = data.draw(
        st.lists(
            st.builds(
                ContactMade,
                stage_sequence=st.just(notice["stage_sequence"]),
                stage=st.just(notice["stage"]),
                at=instants,
                in_flight=st.booleans(),
            ),
            max_size=3,
        )
    )
    alone = at_send_time(**notice)  # type: ignore[arg-type]
    contacts = notice["contacts"]
    assert isinstance(contacts, list)
    with_siblings = at_send_time(**{**notice, "contacts": [*contacts, *siblings]})  # type: ignore[arg-type]
    assert alone == with_siblings


def test_a_thank_you_caps_no_chase_and_an_in_flight_notice_supersedes_nothing() -> None:
    thanks = ContactMade(stage_sequence=3, stage="current", at=BASE)
    assert isinstance(
        at_send_time(
            stage_sequence=4,
            stage="reminder",
            not_before=None,
            contact_cap_days=3,
            contacts=[thanks],
            now=BASE + timedelta(hours=1),
        ),
        Send,
    )
    going = ContactMade(stage_sequence=5, stage="overdue_1", at=BASE, in_flight=True)
    held = at_send_time(
        stage_sequence=4,
        stage="reminder",
        not_before=None,
        contact_cap_days=3,
        contacts=[going],
        now=BASE,
    )
    assert isinstance(held, Hold) and held.until == BASE + timedelta(days=3)
