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
