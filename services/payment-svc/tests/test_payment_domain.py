"""The cash application rules: worked examples and properties (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payment_svc.domain import (
    ZERO,
    Credit,
    DiscountTerms,
    InvoiceState,
    PaymentIn,
    PaymentRuleError,
    Requested,
    allocate,
    applied_to,
    apply_credit,
    credit_note,
    earned_discount,
    hold_can_pay,
    undone,
)

ISSUED = date(2026, 3, 1)
TWO_TEN = DiscountTerms(Decimal(2), 10)


def d(text: str) -> Decimal:
    return Decimal(text)


def invoice(
    invoice_id: str,
    amount: str,
    *,
    due: date = date(2026, 3, 31),
    currency: str = "EUR",
    terms: DiscountTerms | None = None,
    account: str = "A",
    **changes: object,
) -> InvoiceState:
    state = InvoiceState(
        invoice_id=invoice_id,
        currency=currency,
        amount_due=d(amount),
        issue_date=ISSUED,
        due_date=due,
        timezone="Europe/Berlin",
        discount_terms=terms,
        account_id=account,
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def on_day(day: int) -> datetime:
    """Noon in Berlin on day ``day`` after the issue date."""
    return datetime(2026, 3, 1, 11, 0, tzinfo=UTC) + timedelta(days=day)


def pay(
    amount: str,
    *allocations: tuple[str, str],
    at: datetime | None = None,
    currency: str = "EUR",
    payment_id: str = "P",
    explicit: bool | None = None,
) -> PaymentIn:
    requested = tuple(Requested(i, d(a)) for i, a in allocations)
    return PaymentIn(
        payment_id=payment_id,
        currency=currency,
        amount=d(amount),
        received_at=at or on_day(1),
        allocations=requested if (allocations or explicit) else None,
        account_id="A",
    )


def book(*invoices: InvoiceState) -> dict[str, InvoiceState]:
    return {i.invoice_id: i for i in invoices}


# -- worked examples (docs/payment-svc.md) ---------------------------------------------


def test_oldest_due_date_first_then_lowest_id_and_the_rest_is_credit() -> None:
    invoices = book(
        invoice("INV-3", "300.00", due=date(2026, 3, 10)),
        invoice("INV-2", "200.00", due=date(2026, 3, 20)),
        invoice("INV-1", "200.00", due=date(2026, 3, 20)),
        invoice("USD-1", "50.00", due=date(2026, 3, 1), currency="USD"),
        invoice("OTHER", "50.00", due=date(2026, 3, 1), account="B"),
    )
    plan = allocate(invoices, pay("650.00"))
    assert [(a.invoice_id, a.amount) for a in plan.applied] == [
        ("INV-3", d("300.00")),
        ("INV-1", d("200.00")),
        ("INV-2", d("150.00")),
    ]
    assert plan.credit == ZERO
    assert allocate(invoices, pay("1000.00")).credit == d("300.00")


def test_two_ten_net_thirty_settles_on_day_ten_not_on_day_eleven() -> None:
    invoices = book(invoice("INV-1", "1000.00", terms=TWO_TEN))
    [day_ten] = allocate(invoices, pay("980.00", at=on_day(10))).applied
    assert (day_ten.amount, day_ten.discount) == (d("980.00"), d("20.00"))
    [day_eleven] = allocate(invoices, pay("980.00", at=on_day(11))).applied
    assert (day_eleven.amount, day_eleven.discount) == (d("980.00"), ZERO)
    after = applied_to(invoices["INV-1"], day_eleven)
    assert after.balance == d("20.00")


def test_the_discount_window_is_counted_in_the_invoices_time_zone() -> None:
    invoices = book(invoice("INV-1", "1000.00", terms=TWO_TEN))
    # 23:30 UTC on day 10 is already day 11 in Berlin.
    late = datetime(2026, 3, 11, 23, 30, tzinfo=UTC)
    assert earned_discount(invoices["INV-1"], late) == ZERO
    assert earned_discount(invoices["INV-1"], datetime(2026, 3, 11, 22, 30, tzinfo=UTC)) == d("20")


def test_paying_in_full_in_the_window_takes_no_discount_and_a_partial_payment_waits() -> None:
    invoices = book(invoice("INV-1", "1000.00", terms=TWO_TEN))
    [full] = allocate(invoices, pay("1000.00", at=on_day(2))).applied
    assert (full.amount, full.discount) == (d("1000.00"), ZERO)
    [part] = allocate(invoices, pay("500.00", at=on_day(2))).applied
    assert part.discount == ZERO
    rest = applied_to(invoices["INV-1"], part)
    [closing] = allocate(book(rest), pay("480.00", at=on_day(9))).applied
    assert closing.discount == d("20.00")
    assert applied_to(rest, closing).balance == ZERO


@pytest.mark.parametrize(
    ("allocations", "field", "words"),
    [
        ((("INV-1", "600.01"),), "allocations[0].amount", "exceeds the balance 600.00"),
        ((("VOID", "1.00"),), "allocations[0].invoice_id", "is void"),
        ((("USD-1", "1.00"),), "allocations[0].invoice_id", "is in USD"),
        ((("OTHER", "1.00"),), "allocations[0].invoice_id", "another account"),
        ((("INV-1", "1.00"), ("INV-1", "2.00")), "allocations[1].invoice_id", "named twice"),
        ((("INV-1", "600.00"), ("NEW", "500.00")), "allocations", "more than the payment"),
    ],
)
def test_explicit_allocations_the_rules_refuse_name_the_allocation(
    allocations: tuple[tuple[str, str], ...], field: str, words: str
) -> None:
    invoices = book(
        invoice("INV-1", "600.00"),
        invoice("VOID", "10.00", void=True),
        invoice("USD-1", "10.00", currency="USD"),
        invoice("OTHER", "10.00", account="B"),
    )
    with pytest.raises(PaymentRuleError) as info:
        allocate(invoices, pay("1000.00", *allocations))
    assert info.value.field == field
    assert words in str(info.value)


def test_an_allocation_to_an_unknown_invoice_is_held_and_applied_when_it_arrives() -> None:
    plan = allocate(book(), pay("1000.00", ("INV-9", "700.00")))
    assert plan.applied == ()
    assert [(h.invoice_id, h.amount) for h in plan.held] == [("INV-9", d("700.00"))]
    assert plan.credit == d("300.00")
    arrived = invoice("INV-9", "500.00")
    [use] = apply_credit(
        arrived,
        [Credit("P", on_day(1), held=d("700.00"), credit=d("300.00"), named=frozenset({"INV-9"}))],
    )
    # Capped at the balance: the rest of the hold joins the free credit.
    assert (use.applied.amount, use.credit_left) == (d("500.00"), d("500.00"))


def test_credit_goes_oldest_payment_first_but_never_to_an_invoice_its_payer_named() -> None:
    arrived = invoice("INV-5", "150.00")
    uses = apply_credit(
        arrived,
        [
            Credit("P1", on_day(1), credit=d("100.00"), named=frozenset({"INV-5"})),
            Credit("P2", on_day(2), credit=d("100.00")),
            Credit("P3", on_day(3), credit=d("100.00")),
        ],
    )
    assert [(u.payment_id, u.applied.amount, u.credit_left) for u in uses] == [
        ("P2", d("100.00"), ZERO),
        ("P3", d("50.00"), d("50.00")),
    ]


def test_a_reversal_gives_back_the_money_and_the_discount() -> None:
    before = invoice("INV-1", "1000.00", terms=TWO_TEN)
    [applied] = allocate(book(before), pay("980.00", at=on_day(3))).applied
    after = applied_to(before, applied)
    assert after.balance == ZERO
    assert undone(after, applied).balance == d("1000.00")


# -- properties ----------------------------------------------------------------------

cents = st.integers(min_value=1, max_value=500_000).map(lambda c: Decimal(c).scaleb(-2))
terms = st.one_of(st.none(), st.just(TWO_TEN), st.just(DiscountTerms(Decimal("1.5"), 5)))


@st.composite
def invoice_sets(
    draw: st.DrawFn, currencies: tuple[str, ...] = ("EUR", "USD")
) -> list[InvoiceState]:
    count = draw(st.integers(min_value=0, max_value=6))
    invoices = []
    for n in range(count):
        amount = draw(cents)
        paid = draw(st.sampled_from([ZERO, ZERO, (amount / 2).quantize(Decimal("0.01"))]))
        invoices.append(
            InvoiceState(
                invoice_id=f"INV-{n}",
                currency=draw(st.sampled_from(currencies)),
                amount_due=amount,
                issue_date=ISSUED,
                due_date=ISSUED + timedelta(days=draw(st.integers(0, 60))),
                timezone="Europe/Berlin",
                discount_terms=draw(terms),
                paid=paid,
                void=draw(st.booleans()) and draw(st.booleans()),
                account_id="A",
            )
        )
    return invoices


@given(
    invoices=invoice_sets(),
    amount=cents,
    day=st.integers(0, 20),
    explicit=st.lists(st.tuples(st.integers(0, 7), cents), max_size=4),
    by_age=st.booleans(),
)
def test_allocations_never_exceed_the_payment_or_a_balance_and_money_is_conserved(
    invoices: list[InvoiceState],
    amount: Decimal,
    day: int,
    explicit: list[tuple[int, Decimal]],
    by_age: bool,
) -> None:
    known = book(*invoices)
    wanted = tuple(Requested(f"INV-{n}", a) for n, a in explicit)
    payment = PaymentIn("P", "EUR", amount, on_day(day), None if by_age else wanted, account_id="A")
    try:
        plan = allocate(known, payment)
    except PaymentRuleError as error:
        assert error.field is not None and error.field.startswith("allocations")
        return
    applied = sum((a.amount for a in plan.applied), ZERO)
    held = sum((h.amount for h in plan.held), ZERO)
    discount = sum((a.discount for a in plan.applied), ZERO)
    assert plan.credit >= ZERO
    assert applied + held <= amount
    # Conserved: allocated + discount taken + credit = amount + discount taken.
    assert applied + held + discount + plan.credit == amount + discount
    for part in plan.applied:
        target = known[part.invoice_id]
        assert target.currency == "EUR" and not target.void
        assert part.amount > ZERO and part.settles <= target.balance
        assert part.discount <= earned_discount(target, payment.received_at)
    assert len({a.invoice_id for a in plan.applied}) == len(plan.applied)


@dataclass
class Account:
    """The service's fold, in memory: what the shell does with the rules' answers."""

    invoices: dict[str, InvoiceState] = field(default_factory=dict)
    payments: list[tuple[str, datetime, dict[str, Decimal], Decimal, frozenset[str]]] = field(
        default_factory=list
    )

    def receive(self, payment: PaymentIn) -> None:
        plan = allocate(self.invoices, payment)
        for part in plan.applied:
            self.invoices[part.invoice_id] = applied_to(self.invoices[part.invoice_id], part)
        held = {h.invoice_id: h.amount for h in plan.held}
        named = frozenset(r.invoice_id for r in payment.allocations or ())
        self.payments.append((payment.payment_id, payment.received_at, held, plan.credit, named))

    def arrive(self, state: InvoiceState) -> None:
        credits = [
            Credit(pid, at, held.get(state.invoice_id, ZERO), credit, named)
            for pid, at, held, credit, named in self.payments
        ]
        credits = [c for c in credits if c.held > ZERO or c.credit > ZERO]
        for use in apply_credit(state, credits):
            state = applied_to(state, use.applied) if use.applied.amount > ZERO else state
            for index, (pid, at, held, _, named) in enumerate(self.payments):
                if pid == use.payment_id:
                    held = {k: v for k, v in held.items() if k != state.invoice_id}
                    self.payments[index] = (pid, at, held, use.credit_left, named)
        self.invoices[state.invoice_id] = state

    def credit(self) -> Decimal:
        return sum((c + sum(h.values(), ZERO) for _, _, h, c, _ in self.payments), ZERO)


def run(steps: list[InvoiceState | PaymentIn]) -> Account:
    account = Account()
    for step in steps:
        if isinstance(step, PaymentIn):
            account.receive(step)
        else:
            account.arrive(step)
    return account


@st.composite
def explicit_scenarios(draw: st.DrawFn) -> tuple[list[InvoiceState], list[PaymentIn], list[int]]:
    """Invoices, payments naming them (never more than an invoice can take whatever the
    order), and the points among the payments at which each invoice arrives."""
    invoices = [
        invoice(f"INV-{n}", str(draw(cents)), terms=draw(terms))
        for n in range(draw(st.integers(1, 4)))
    ]
    room = {i.invoice_id: i.amount_due - earned_discount(i, on_day(0)) for i in invoices}
    payments = []
    for n in range(draw(st.integers(1, 5))):
        parts = []
        for target in draw(st.lists(st.sampled_from(invoices), max_size=3, unique=True)):
            if room[target.invoice_id] <= ZERO:
                continue
            share = draw(st.integers(1, 100))
            amount = max(
                Decimal("0.01"), (room[target.invoice_id] * share / 100).quantize(Decimal("0.01"))
            )
            room[target.invoice_id] -= amount
            parts.append(Requested(target.invoice_id, amount))
        if parts:
            total = sum((p.amount for p in parts), ZERO)
            payments.append(
                PaymentIn(
                    f"P{n}", "EUR", total, on_day(draw(st.integers(0, 20))), tuple(parts), "A"
                )
            )
    arrivals = [draw(st.integers(0, len(payments))) for _ in invoices]
    return invoices, payments, arrivals


def interleave(
    invoices: list[InvoiceState], payments: list[PaymentIn], arrivals: list[int]
) -> list[InvoiceState | PaymentIn]:
    steps: list[InvoiceState | PaymentIn] = []
    for position in range(len(payments) + 1):
        steps += [i for i, at in zip(invoices, arrivals, strict=True) if at == position]
        if position < len(payments):
            steps.append(payments[position])
    return steps


@settings(max_examples=200)
@given(scenario=explicit_scenarios())
def test_when_invoices_arrive_does_not_change_balances_paid_by_name(
    scenario: tuple[list[InvoiceState], list[PaymentIn], list[int]],
) -> None:
    invoices, payments, arrivals = scenario
    first = run(list(invoices) + payments)
    interleaved = run(interleave(invoices, payments, arrivals))
    assert {k: v.balance for k, v in interleaved.invoices.items()} == {
        k: v.balance for k, v in first.invoices.items()
    }
    assert interleaved.credit() == first.credit()


@settings(max_examples=200)
@given(
    amounts=st.lists(cents, min_size=1, max_size=5),
    paid=st.lists(cents, min_size=1, max_size=5),
    order=st.randoms(use_true_random=False),
)
def test_any_arrival_order_leaves_the_same_open_total_and_credit(
    amounts: list[Decimal], paid: list[Decimal], order: object
) -> None:
    invoices: list[InvoiceState | PaymentIn] = [
        invoice(f"INV-{n}", str(a), due=ISSUED + timedelta(days=n)) for n, a in enumerate(amounts)
    ]
    payments: list[InvoiceState | PaymentIn] = [
        PaymentIn(f"P{n}", "EUR", a, on_day(n), None, "A") for n, a in enumerate(paid)
    ]
    steps = invoices + payments
    shuffled = list(steps)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    one, other = run(steps), run(shuffled)

    def open_total(account: Account) -> Decimal:
        return sum((i.balance for i in account.invoices.values()), ZERO)

    assert open_total(one) == open_total(other)
    assert one.credit() == other.credit()
    assert open_total(one) == ZERO or one.credit() == ZERO
    assert open_total(one) - one.credit() == sum(amounts, ZERO) - sum(paid, ZERO)


# -- settings ----------------------------------------------------------------------------


def test_webhook_secrets_parse_into_providers_and_tenants() -> None:
    from payment_svc.settings import PaymentSettings

    settings = PaymentSettings(
        service_name="payment-svc",
        webhook_secrets="acme:stripe:whsec_a_0123456789ab, acme:stripe:whsec_b:with:colons1,"
        "globex:adyen:adyen_globex_0123",
    )
    assert settings.webhook_providers() == {"stripe", "adyen"}
    assert settings.secrets_for("stripe") == [
        ("acme", "whsec_a_0123456789ab"),
        ("acme", "whsec_b:with:colons1"),
    ]
    assert settings.secrets_for("paypal") == []
    assert "whsec_a" not in repr(settings)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("acme:stripe", "tenant:provider:secret"),
        ("acme:Stripe!:whsec_0123456789ab", "provider"),
        ("acme:stripe:short", "shorter than 16"),
        ("acme:stripe:whsec_0123456789ab,globex:stripe:whsec_0123456789ab", "acme and globex"),
        ("a/b:stripe:whsec_0123456789ab", "tenant"),
    ],
)
def test_bad_webhook_secrets_stop_the_service_naming_the_problem(value: str, words: str) -> None:
    from pydantic import ValidationError

    from payment_svc.settings import PaymentSettings

    with pytest.raises(ValidationError, match=words):
        PaymentSettings(service_name="payment-svc", webhook_secrets=value)


def test_a_malformed_webhook_secret_is_not_quoted_in_the_error() -> None:
    from pydantic import ValidationError

    from payment_svc.settings import PaymentSettings

    # The tenant forgotten, or the provider: start-up prints the message, not the secret.
    for value in ("whsec_live_0123456789ab", "acme:whsec_live_0123456789ab"):
        with pytest.raises(ValidationError) as refused:
            PaymentSettings(service_name="payment-svc", webhook_secrets=value)
        [error] = refused.value.errors()
        assert "tenant:provider:secret" in error["msg"]
        assert "whsec_live" not in error["msg"]


def test_a_hold_pays_only_an_invoice_of_its_payments_account_and_currency() -> None:
    arriving = invoice("I-1", "100.00", account="A", currency="EUR")
    assert hold_can_pay(arriving, ("A", "EUR"))
    assert not hold_can_pay(arriving, ("B", "EUR"))
    assert not hold_can_pay(arriving, ("A", "USD"))
    assert not hold_can_pay(arriving, None)  # the payment is gone


def test_an_upheld_dispute_credits_at_most_the_balance_and_a_rejected_one_nothing() -> None:
    half_paid = invoice("I-1", "100.00", paid=d("60.00"))
    assert credit_note(half_paid, "upheld", d("25.00")) == d("25.00")
    assert credit_note(half_paid, "upheld", d("90.00")) == d("40.00")
    assert credit_note(half_paid, "rejected", d("25.00")) == ZERO
    assert credit_note(half_paid, "upheld", None) == ZERO
    assert credit_note(half_paid, "upheld", ZERO) == ZERO
