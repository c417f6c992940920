"""Property tests of invoice-svc's pure rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoice_svc import domain
from invoice_svc.domain import Balance, InvoiceStatus

cents = st.integers(min_value=1, max_value=10**11).map(lambda c: Decimal(c).scaleb(-2))
zones = st.sampled_from(
    [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Pacific/Auckland",
        "Asia/Kolkata",
        "Pacific/Pago_Pago",
    ]
)
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC)
)


@given(cents, st.lists(cents, max_size=6))
def test_status_follows_payments(amount_due: Decimal, payments: list[Decimal]) -> None:
    balance = Balance(amount_due)
    for payment in payments:
        balance = domain.apply_payment(balance, payment)
    paid = sum(payments, Decimal(0))
    assert balance.balance == max(Decimal(0), amount_due - paid)
    assert balance.balance >= 0
    if paid >= amount_due:
        assert balance.status is InvoiceStatus.PAID
    elif paid > 0:
        assert balance.status is InvoiceStatus.PARTIALLY_PAID
    else:
        assert balance.status is InvoiceStatus.OPEN


@given(cents, cents)
def test_a_reversal_undoes_its_payment(amount_due: Decimal, payment: Decimal) -> None:
    before = Balance(amount_due)
    after = domain.reverse_payment(domain.apply_payment(before, payment), payment)
    assert after == before
    assert after.status is InvoiceStatus.OPEN


@given(cents, cents, cents)
def test_credit_never_exceeds_what_is_owed(
    amount_due: Decimal, paid: Decimal, disputed: Decimal
) -> None:
    balance = domain.credit(domain.apply_payment(Balance(amount_due), paid), disputed)
    assert balance.balance == max(Decimal(0), amount_due - paid - disputed)
    assert balance.credited <= amount_due


def test_void_beats_everything_and_zero_keeps_its_places() -> None:
    assert Balance(Decimal("10.00"), voided=True).status is InvoiceStatus.VOID
    assert str(domain.apply_payment(Balance(Decimal("10.00")), Decimal("10.00")).balance) == "0.00"
    with pytest.raises(domain.InvoiceRuleError):
        domain.apply_payment(Balance(Decimal("10.00")), Decimal("0"))


@given(dates, zones, st.integers(min_value=0, max_value=30))
def test_overdue_starts_at_local_midnight_after_due_date_and_grace(
    due: date, zone: str, grace: int
) -> None:
    start = domain.overdue_at(due, zone, grace)
    local = start.astimezone(ZoneInfo(zone))
    assert local.date() == due + timedelta(days=grace + 1)
    # None of these zones skips midnight on a DST change, so it is always 00:00.
    assert (local.hour, local.minute) == (0, 0)
    # Just before that instant the invoice is still within its grace: not overdue yet.
    just_before = domain.local_date(start - timedelta(microseconds=1), zone)
    assert just_before <= due + timedelta(days=grace)


@given(dates, zones, instants)
def test_days_past_due_counts_local_calendar_days(due: date, zone: str, now: datetime) -> None:
    days = domain.days_past_due(due, zone, now)
    local_today = now.astimezone(ZoneInfo(zone)).date()
    assert days == max(0, (local_today - due).days)


def test_the_same_instant_is_overdue_in_one_zone_and_not_in_another() -> None:
    due = date(2026, 3, 3)
    now = datetime(2026, 3, 3, 20, 0, tzinfo=UTC)  # 4 March already in Auckland
    assert domain.overdue_at(due, "Pacific/Auckland", 0) <= now
    assert domain.overdue_at(due, "America/New_York", 0) > now


# -- standing: status, chase flag and settled_at follow the balance (domain.Standing) --------

balances = st.builds(
    lambda due, paid, credited, voided: Balance(due, paid, credited, voided),
    cents,
    st.one_of(st.just(Decimal("0.00")), cents),
    st.one_of(st.just(Decimal("0.00")), cents),
    st.booleans(),
)
standings = st.builds(
    domain.Standing,
    st.sampled_from(list(InvoiceStatus)),
    st.booleans(),
    st.one_of(st.none(), instants),
)


@given(balances, instants)
def test_a_new_invoice_is_chased_unless_paid_and_settled_only_when_paid(
    balance: Balance, now: datetime
) -> None:
    standing = domain.standing_of_new(balance, now)
    assert standing.status is balance.status
    assert standing.chase_pending == (
        balance.status in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)
    )
    assert standing.settled_at == (now if balance.status is InvoiceStatus.PAID else None)


@given(standings, balances, instants, st.booleans(), st.booleans())
def test_settled_at_is_set_on_settling_cleared_on_reopening_and_kept_otherwise(
    before: domain.Standing, balance: Balance, now: datetime, disputed: bool, notified: bool
) -> None:
    after = domain.standing_after(before, balance, now, disputed=disputed, notified=notified)
    paid, was_paid = balance.status is InvoiceStatus.PAID, before.status is InvoiceStatus.PAID
    assert after.status is balance.status
    if paid and not was_paid:
        assert after.settled_at == now
    elif was_paid and not paid:
        assert after.settled_at is None
    else:
        assert after.settled_at == before.settled_at


@given(standings, balances, instants, st.booleans(), st.booleans())
def test_only_an_unpaid_undisputed_unannounced_invoice_is_chased(
    before: domain.Standing, balance: Balance, now: datetime, disputed: bool, notified: bool
) -> None:
    after = domain.standing_after(before, balance, now, disputed=disputed, notified=notified)
    unpaid = balance.status in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)
    assert after.chase_pending == (unpaid and not disputed and not notified)


def test_a_reversal_of_a_settling_payment_reopens_and_forgets_settled_at() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    due = Balance(Decimal("100.00"))
    paid = domain.apply_payment(due, Decimal("100.00"))
    open_ = domain.standing_of_new(due, at)
    settled = domain.standing_after(open_, paid, at, disputed=False, notified=False)
    assert (settled.status, settled.chase_pending, settled.settled_at) == (
        InvoiceStatus.PAID,
        False,
        at,
    )
    reopened = domain.standing_after(
        settled, domain.reverse_payment(paid, Decimal("100.00")), at, disputed=False, notified=False
    )
    assert (reopened.status, reopened.chase_pending, reopened.settled_at) == (
        InvoiceStatus.OPEN,
        True,
        None,
    )
