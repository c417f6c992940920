"""The envelope and the payloads: what they derive, and the invariants subscribers rely on."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from dunning_events import (
    EVENT_CLASSES,
    CollectionsHandoffRequested,
    DunningStageChanged,
    Envelope,
    Event,
    InvoiceDisputeResolved,
    InvoiceIssued,
    InvoiceOverdue,
    Money,
    NotificationRequested,
    PaymentPlanAgreed,
    PaymentReceived,
    PaymentReversed,
    PromiseToPayBroken,
    make_envelope,
    topics,
)
from dunning_events.samples import ACCOUNT, TRACEPARENT, WHEN, sample_envelope, sample_event


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def messages(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]


# -- the envelope --------------------------------------------------------------------


def test_make_envelope_derives_the_attributes_from_the_data() -> None:
    data = sample_event(InvoiceIssued)
    envelope = make_envelope(data, tenant="acme", source="/invoice-svc", time=WHEN)
    assert envelope.specversion == "1.0"
    assert envelope.type == "dunning.InvoiceIssued.v1"
    assert envelope.dataschema == "urn:dunning:events:InvoiceIssued:v1"
    assert envelope.schemaversion == 1
    assert envelope.subject == ACCOUNT == data.account_id
    assert envelope.datacontenttype == "application/json"
    assert envelope.traceparent is None and envelope.tracestate is None
    assert uuid.UUID(envelope.id).version == 4
    assert envelope.data is data


def test_ids_are_new_unless_given() -> None:
    data = sample_event(InvoiceOverdue)
    first, second = (make_envelope(data, tenant="acme", source="/x", time=WHEN) for _ in range(2))
    assert first.id != second.id
    given = make_envelope(data, tenant="acme", source="/x", time=WHEN, id="evt-1")
    assert given.id == "evt-1"


def test_partition_key_is_tenant_and_account() -> None:
    envelope = sample_envelope(PaymentReceived, tenant="globex")
    assert envelope.partition_key == "globex:ACME-0042"


def test_typed_access_to_the_data() -> None:
    envelope = sample_envelope(PaymentReceived)
    payment = envelope.data_as(PaymentReceived)
    assert payment.amount == eur("500.00")
    with pytest.raises(TypeError, match=r"^dunning\.PaymentReceived\.v1 does not carry a Invoice"):
        envelope.data_as(InvoiceIssued)


def test_time_keeps_its_offset_and_must_have_one() -> None:
    berlin = datetime(2026, 3, 15, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    envelope = make_envelope(sample_event(InvoiceOverdue), tenant="acme", source="/x", time=berlin)
    assert envelope.time == berlin and envelope.time.utcoffset() == timedelta(hours=1)
    with pytest.raises(ValidationError) as info:
        make_envelope(
            sample_event(InvoiceOverdue), tenant="acme", source="/x", time=datetime(2026, 3, 15)
        )
    assert messages(info.value) == ["time: Input should have timezone info"]


MALFORMED_ATTRIBUTES: list[tuple[dict[str, Any], str]] = [
    ({"tenant": "acme:eu"}, "tenant: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$'"),
    ({"tenant": ""}, "tenant: String should have at least 1 character"),
    (
        {"source": "/invoice svc"},
        "source: Value error, must be a URI-reference such as /invoice-svc (no spaces)",
    ),
    ({"id": "x" * 65}, "id: String should have at most 64 characters"),
    (
        {"traceparent": "00-abc-def-01"},
        "traceparent: Value error, must be a W3C traceparent like 00-<32 hex>-<16 hex>-<2 hex>",
    ),
    (
        {"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"},
        "traceparent: Value error, must be a W3C traceparent",
    ),
    (
        {"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        "traceparent: Value error, must be a W3C traceparent",
    ),
    ({"tracestate": "a=b"}, ": Value error, tracestate needs a traceparent"),
    (
        {"traceparent": TRACEPARENT, "tracestate": "é=1"},
        "tracestate: Value error, must be a W3C tracestate",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), MALFORMED_ATTRIBUTES)
def test_malformed_attributes_are_refused(changes: dict[str, Any], expected: str) -> None:
    arguments: dict[str, Any] = {"tenant": "acme", "source": "/invoice-svc", "time": WHEN}
    with pytest.raises(ValidationError) as info:
        make_envelope(sample_event(InvoiceOverdue), **{**arguments, **changes})
    [message] = messages(info.value)
    assert message.startswith(expected), message


def test_attributes_must_agree_with_the_data() -> None:
    good = sample_envelope(InvoiceOverdue).model_dump()
    good["data"] = sample_event(InvoiceOverdue)
    schema = "urn:dunning:events:InvoiceOverdue:v1"
    for name, value, expected in [
        ("type", "dunning.InvoiceVoided.v1", "type must be 'dunning.InvoiceOverdue.v1'"),
        ("subject", "OTHER", "subject must be 'ACME-0042'"),
        ("dataschema", "urn:x", f"dataschema must be '{schema}'"),
        ("schemaversion", 2, "schemaversion must be 1"),
    ]:
        with pytest.raises(ValidationError) as info:
            Envelope.model_validate({**good, name: value})
        assert messages(info.value) == [f": Value error, {expected} for this data"]


def test_events_and_envelopes_are_immutable_and_closed() -> None:
    envelope = sample_envelope(InvoiceOverdue)
    with pytest.raises(ValidationError, match="frozen"):
        envelope.tenant = "globex"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        envelope.data.account_id = "X"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        sample_event(InvoiceOverdue, colour="red")


def test_every_event_declares_its_type_topic_and_version() -> None:
    for cls in EVENT_CLASSES:
        assert cls.__name__ == cls.event_type
        assert cls.version == 1
        assert cls.topic in topics.ALL_TOPICS
        assert cls.cloudevent_type() == f"dunning.{cls.event_type}.v1"
        assert cls.dataschema() == f"urn:dunning:events:{cls.event_type}:v1"
        assert "account_id" in cls.model_fields
        assert (cls.__doc__ or "").strip(), f"{cls.__name__}: the docstring describes the schema"


def test_topics_follow_the_producers() -> None:
    by_topic = {
        topic: {cls.event_type for cls in EVENT_CLASSES if cls.topic == topic}
        for topic in topics.ALL_TOPICS
    }
    assert by_topic == {
        "invoices": {
            "InvoiceIssued",
            "InvoiceOverdue",
            "InvoiceVoided",
            "InvoiceDisputed",
            "InvoiceDisputeResolved",
            "InvoiceSettled",
        },
        "payments": {"PaymentReceived", "PaymentReversed", "CreditApplied"},
        "dunning.commands": {"NotificationRequested"},
        "dunning.events": {
            "DunningStageChanged",
            "CollectionsHandoffRequested",
            "PromiseToPayRecorded",
            "PromiseToPayBroken",
            "PromiseToPayKept",
            "InstallmentMissed",
            "LateFeeAssessed",
            "CreditHoldRequested",
            "CreditHoldReleased",
            "AccountWrittenOff",
            "PaymentPlanAgreed",
        },
        "notifications": {
            "NotificationSent",
            "NotificationFailed",
            "NotificationSuppressed",
            "CollectorTaskCompleted",
        },
        "api-keys": {"ApiKeyRecorded"},
    }


# -- payload invariants ------------------------------------------------------------


def _line(amount: str) -> dict[str, str]:
    return {"description": "x", "quantity": "1", "unit_price": amount, "amount": amount}


def _installment(day: int, money: Money) -> dict[str, Any]:
    return {"due_date": date(2026, 5, day), "amount": money}


_NOTICE_INVOICE = {
    "invoice_id": "I",
    "amount_due": eur("5.00"),
    "balance": Money.of(5, "USD"),
    "due_date": date(2026, 1, 1),
    "days_past_due": 3,
}

# (event, changes to its sample, field path of the error ("" for the model), message)
INVALID: list[tuple[type[Event], dict[str, Any], str, str]] = [
    (InvoiceIssued, {"due_date": date(2026, 1, 31)}, "", "due_date must not be before issue_date"),
    (
        InvoiceIssued,
        {"timezone": "Mars/Olympus"},
        "timezone",
        "'Mars/Olympus' is not an IANA time zone (e.g. 'Europe/Berlin')",
    ),
    (InvoiceIssued, {"locale": "German"}, "locale", "String should match pattern"),
    (InvoiceIssued, {"segment": "Gold Tier"}, "segment", "String should match pattern"),
    (
        InvoiceIssued,
        {"contact": {"name": "A", "email": "not-an-email"}},
        "contact.email",
        "String should match pattern",
    ),
    (InvoiceIssued, {"amount_due": eur("0.00")}, "amount_due", "must be greater than zero"),
    (
        InvoiceIssued,
        {"lines": [_line("0.125")]},
        "",
        "lines[0].amount: EUR allows at most 2 decimal places",
    ),
    (
        InvoiceIssued,
        {"terms": {"late_fee": {"kind": "flat"}}},
        "terms.late_fee",
        "a flat late fee needs an amount and no percent",
    ),
    (
        InvoiceIssued,
        {"terms": {"late_fee": {"kind": "percent_per_month", "percent": "2", "amount": "5"}}},
        "terms.late_fee",
        "a percent_per_month late fee needs a percent and no amount",
    ),
    (
        InvoiceIssued,
        {"terms": {"late_fee": {"kind": "flat", "amount": "5.555"}}},
        "",
        "terms.late_fee.amount: EUR allows at most 2 decimal places",
    ),
    (
        InvoiceIssued,
        {"terms": {"early_payment_discount": {"percent": "120", "within_days": 10}}},
        "terms.early_payment_discount.percent",
        "less than or equal to 100",
    ),
    (
        InvoiceOverdue,
        {"overdue_since": date(2026, 3, 3)},
        "",
        "overdue_since must be after due_date",
    ),
    (InvoiceOverdue, {"balance": eur("-1.00")}, "balance", "must be greater than zero"),
    (
        InvoiceDisputeResolved,
        {"resolution": "rejected"},
        "",
        "a rejected dispute credits nothing",
    ),
    (
        InvoiceDisputeResolved,
        {"credited_amount": Money.of(250, "USD")},
        "",
        "credited_amount is in USD, but the balance is in EUR",
    ),
    (
        InvoiceDisputeResolved,
        {"resolution": "withdrawn"},
        "resolution",
        "Input should be 'upheld' or 'rejected'",
    ),
    (
        PaymentReceived,
        {"unapplied": eur("0.00")},
        "",
        "allocations (400.00) plus unapplied (0.00) must equal the amount (500.00)",
    ),
    (
        PaymentReceived,
        {"unapplied": Money.of(100, "USD")},
        "",
        "unapplied is in USD, but the payment is in EUR",
    ),
    (
        PaymentReceived,
        {"allocations": [{"invoice_id": "INV-1", "amount": Money.of(400, "USD")}]},
        "",
        "allocations[0].amount is in USD, but the payment is in EUR",
    ),
    (
        PaymentReceived,
        {"allocations": [{"invoice_id": "INV-1", "amount": eur("0.00")}]},
        "allocations.0.amount",
        "must be greater than zero",
    ),
    (
        PaymentReceived,
        {"amount": {"amount": 500.0, "currency": "EUR"}},
        "amount.amount",
        "not floats",
    ),
    (
        PaymentReversed,
        {"amount": eur("300.00")},
        "",
        "allocations (400.00) exceed the amount reversed (300.00)",
    ),
    (
        NotificationRequested,
        {"channel": "fax"},
        "channel",
        "Input should be 'email', 'sms', 'webhook' or 'task'",
    ),
    (
        NotificationRequested,
        {"total_overdue": [eur("1.00"), eur("2.00")]},
        "total_overdue",
        "EUR appears twice; give one amount per currency",
    ),
    (
        NotificationRequested,
        {"not_before": datetime(2026, 3, 15, 9)},
        "not_before",
        "Input should have timezone info",
    ),
    (
        NotificationRequested,
        {"invoices": [_NOTICE_INVOICE]},
        "invoices.0",
        "balance and amount_due must be in the same currency",
    ),
    (DunningStageChanged, {"to_stage": "reminder"}, "", "from_stage and to_stage must differ"),
    (DunningStageChanged, {"to_stage": "Overdue 1"}, "to_stage", "String should match pattern"),
    (
        CollectionsHandoffRequested,
        {"overdue_balance": []},
        "overdue_balance",
        "List should have at least 1 item",
    ),
    (
        CollectionsHandoffRequested,
        {"overdue_balance": [eur("1.00"), eur("2.00")]},
        "",
        "EUR appears twice",
    ),
    (
        PromiseToPayBroken,
        {"amount_received": eur("1250.00")},
        "",
        "a promise with the full amount received is kept, not broken",
    ),
    (
        PromiseToPayBroken,
        {"amount_received": Money.of(0, "USD")},
        "",
        "amount_received and amount must be in the same currency",
    ),
    (
        PaymentPlanAgreed,
        {"installments": [_installment(2, eur("1.00")), _installment(1, eur("1.00"))]},
        "",
        "installments must be in order of due_date, one per date",
    ),
    (
        PaymentPlanAgreed,
        {"installments": [_installment(1, Money.of(1, "USD"))]},
        "",
        "installments[0].amount is in USD, but the plan is in EUR",
    ),
    (
        PaymentPlanAgreed,
        {"currency": "EURO"},
        "currency",
        "'EURO' is not an ISO 4217 currency code",
    ),
]


@pytest.mark.parametrize(
    ("cls", "changes", "field", "message"),
    INVALID,
    ids=[f"{cls.__name__}-{message[:40]}" for cls, _, _, message in INVALID],
)
def test_invalid_payloads_are_refused_naming_the_field_and_the_rule(
    cls: type[Event], changes: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        sample_event(cls, **changes)
    errors = [
        (".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, "))
        for e in info.value.errors()
    ]
    assert any(loc == field and message in msg for loc, msg in errors), errors


def test_samples_are_valid_and_satisfy_the_invariants() -> None:
    for cls in EVENT_CLASSES:
        event = sample_event(cls)
        assert type(event) is cls and event.account_id == ACCOUNT
    payment = sample_event(PaymentReceived)
    allocated = sum(a.amount.amount for a in payment.allocations)
    assert allocated + payment.unapplied.amount == payment.amount.amount


def test_defaults_of_an_invoice() -> None:
    minimal = {
        "account_id": "A-1",
        "invoice_id": "INV-1",
        "account_name": "A",
        "contact": {"name": "B"},
        "amount_due": {"amount": "10", "currency": "EUR"},
        "issue_date": "2026-01-01",
        "due_date": "2026-01-31",
    }
    invoice = InvoiceIssued.model_validate(minimal)
    assert (invoice.segment, invoice.timezone, invoice.locale) == ("standard", "UTC", "en")
    assert invoice.terms.net_days == 30 and invoice.lines == [] and invoice.metadata == {}
    assert invoice.amount_due.model_dump(mode="json") == {"currency": "EUR", "amount": "10.00"}


def test_sample_event_changes_are_validated_too() -> None:
    assert sample_event(InvoiceOverdue, days_past_due=3).days_past_due == 3
    with pytest.raises(ValidationError):
        sample_event(InvoiceOverdue, days_past_due=-1)
    assert sample_envelope(InvoiceOverdue, traceparent=TRACEPARENT).traceparent == TRACEPARENT
    assert sample_envelope(InvoiceOverdue).time == WHEN == datetime(2026, 3, 15, 9, 30, tzinfo=UTC)


def test_a_completed_task_states_a_promise_exactly_when_the_outcome_is_promised() -> None:
    from dunning_events.notifications import CollectorTaskCompleted

    assert sample_event(CollectorTaskCompleted).outcome == "promised"
    with pytest.raises(ValidationError, match="needs promised_amount and promised_date"):
        sample_event(CollectorTaskCompleted, promised_date=None)
    with pytest.raises(ValidationError, match="belong to outcome promised"):
        sample_event(CollectorTaskCompleted, outcome="no_answer")
    no_answer = sample_event(
        CollectorTaskCompleted, outcome="no_answer", promised_amount=None, promised_date=None
    )
    assert no_answer.promised_amount is None
