"""Property tests of the pure core over random event sequences and arrival orders."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dunning_fixtures import disputed, issued, paid, resolved, reversed_, settled, voided
from hypothesis import given, settings
from hypothesis import strategies as st

from dunning_events import (
    Event,
    LateFeeAssessed,
    NotificationRequested,
    PaymentReceived,
    PaymentReversed,
)
from dunning_svc.core import (
    CURRENT,
    Account,
    Input,
    Pause,
    RecordPromise,
    Resume,
    Tick,
    apply,
    decide,
)
from dunning_svc.policy import shipped_policy
from dunning_svc.storage import state_of

STANDARD = shipped_policy("standard")
START = datetime(2026, 3, 1, 10, tzinfo=UTC)


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    """Invoice-topic events and payment-topic events of one account, each in topic order."""
    count = draw(st.integers(1, 4))
    invoice_events: list[Event] = []
    payment_events: list[Event] = []
    for n in range(count):
        invoice_id = f"INV-{n}"
        cents = draw(st.integers(100, 500_000))
        amount = f"{cents // 100}.{cents % 100:02d}"
        due = date(2026, 3, 1) + timedelta(days=draw(st.integers(-40, 20)))
        invoice_events.append(issued(invoice_id, amount, due))
        fate = draw(st.sampled_from(["open", "partial", "paid", "disputed", "void", "reversed"]))
        if fate in ("partial", "paid", "reversed"):
            part = (
                cents if fate != "partial" else draw(st.integers(1, cents - 1)) if cents > 1 else 1
            )
            payment = paid(f"P-{n}", (invoice_id, f"{part // 100}.{part % 100:02d}"))
            payment_events.append(payment)
            if fate == "paid":
                invoice_events.append(settled(invoice_id, amount))
            if fate == "reversed":
                payment_events.append(
                    reversed_(f"P-{n}", (invoice_id, f"{part // 100}.{part % 100:02d}"))
                )
        elif fate == "disputed":
            invoice_events.append(disputed(invoice_id, amount))
            if draw(st.booleans()):
                invoice_events.append(resolved(invoice_id, "rejected", amount))
        elif fate == "void":
            invoice_events.append(voided(invoice_id, amount))
    return invoice_events, payment_events


def interleave(draw: st.DrawFn, left: list[Event], right: list[Event]) -> list[Event]:
    """A random merge keeping each topic's own order (there is no order across topics)."""
    picks = draw(st.permutations([0] * len(left) + [1] * len(right)))
    queues = [list(left), list(right)]
    return [queues[p].pop(0) for p in picks]


def project(events: list[Event]) -> Account:
    account = Account("acme", "ACME-42")
    for event in events:
        apply(account, event, STANDARD, START, [], [])
    return account


def expected_balance(events: list[Event], invoice_id: str) -> int:
    """A balance straight from the events, the way a ledger would add them."""
    amount, paid_cents, gone = 0, 0, False
    reversed_ids = {e.payment_id for e in events if isinstance(e, PaymentReversed)}
    for event in events:
        if getattr(event, "invoice_id", None) == invoice_id:
            if event.event_type == "InvoiceIssued":
                amount = int(event.amount_due.amount * 100)  # type: ignore[attr-defined]
            if event.event_type in ("InvoiceSettled", "InvoiceVoided"):
                gone = True
        if isinstance(event, PaymentReceived) and event.payment_id not in reversed_ids:
            paid_cents += sum(
                int(a.amount.amount * 100) for a in event.allocations if a.invoice_id == invoice_id
            )
    if gone and not any(
        isinstance(e, PaymentReversed) and any(a.invoice_id == invoice_id for a in e.allocations)
        for e in events
    ):
        return 0
    return max(0, amount - paid_cents)


@st.composite
def two_orders(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    invoices, payments = draw(ledgers())
    return interleave(draw, invoices, payments), interleave(draw, invoices, payments)


@settings(max_examples=200, deadline=None)
@given(two_orders())
def test_any_cross_topic_order_ends_in_the_same_projection(
    orders: tuple[list[Event], list[Event]],
) -> None:
    first, second = orders
    a, b = project(first), project(second)
    assert state_of(a) == state_of(b)
    for invoice_id, invoice in a.invoices.items():
        assert a.balance(invoice) == expected_balance(first, invoice_id)


@settings(max_examples=100, deadline=None)
@given(two_orders())
def test_any_order_then_a_tick_ends_in_the_same_stage(
    orders: tuple[list[Event], list[Event]],
) -> None:
    ends = []
    for events in orders:
        account = project(events)
        account, _, _ = decide(account, Tick(), STANDARD, START + timedelta(days=3))
        ends.append((account.stage, account.next_action_at))
    assert ends[0] == ends[1]


def test_a_duplicate_of_anything_changes_nothing() -> None:
    events: list[Event] = [
        issued("INV-1", "100.00", date(2026, 2, 1)),
        paid("P1", ("INV-1", "40.00")),
        disputed("INV-1", "10.00"),
        reversed_("P1", ("INV-1", "40.00")),
    ]
    once = project(events)
    twice = project([e for e in events for _ in range(2)])
    assert state_of(once) == state_of(twice)


@st.composite
def journeys(draw: st.DrawFn) -> list[tuple[int, Input]]:
    """(hours after START, input) pairs, in time order: events, manual actions and ticks."""
    invoices, payments = draw(ledgers())
    events = interleave(draw, invoices, payments)
    steps: list[tuple[int, Input]] = []
    hour = 0
    pool: list[Input] = [
        *events,
        *[Tick()] * draw(st.integers(5, 40)),
        *draw(
            st.lists(
                st.sampled_from(
                    [
                        Pause("holiday", None, "jo"),
                        Resume("jo"),
                        RecordPromise("PTP-1", "EUR", 10_000, date(2026, 3, 20), "jo"),
                    ]
                ),
                max_size=3,
            )
        ),
    ]
    order = draw(st.permutations(range(len(pool))))
    for index in order:
        hour += draw(st.integers(0, 72))
        steps.append((hour, pool[index]))
    return steps


@settings(max_examples=150, deadline=None)
@given(journeys())
def test_escalation_invariants(journey: list[tuple[int, Input]]) -> None:
    account = Account("acme", "ACME-42")
    notice_ids: set[str] = set()
    fee_ids: set[str] = set()
    for hours, input in journey:
        now = START + timedelta(hours=hours)
        before = account
        try:
            account, commands, reasons = decide(account, input, STANDARD, now)
        except ValueError:
            continue  # a manual action the rules refuse changes nothing
        assert reasons or not commands
        for command in commands:
            assert type(command).model_validate_json(command.model_dump_json()) == command
        notices = [c for c in commands if isinstance(c, NotificationRequested)]
        for notice in notices:
            # No step emits its command twice.
            assert notice.notification_id not in notice_ids
            notice_ids.add(notice.notification_id)
        for fee in (c for c in commands if isinstance(c, LateFeeAssessed)):
            assert fee.fee_invoice_id not in fee_ids
            fee_ids.add(fee.fee_invoice_id)
        # No message to a paused or written-off account, except a thank-you for paying up.
        chasing = [n for n in notices if n.stage != CURRENT]
        if account.paused or account.written_off or before.written_off:
            assert chasing == []
        if chasing:
            assert not account.paused
            assert account.overdue_invoices(account.local_today(now)) or account.stage == "reminder"
        # The stage only moves back by payment, dispute or resume rules.
        # Time passing alone never lowers it. (A payment, void or dispute that came during a
        # pause or below the small-balance threshold re-anchors the ladder when the account
        # is chased again, which can be at a tick.)
        touched = any(
            i.payments or i.disputed or i.void or i.settled or i.credited
            for i in account.invoices.values()
        )
        grows_only = not before.paused and not touched and isinstance(input, Tick)
        if grows_only and account.stage != CURRENT:
            assert STANDARD.rank(account.stage) >= STANDARD.rank(before.stage)
