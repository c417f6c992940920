"""The state column's encoder: rows written before the core had typed records decode to
the same account, and an account is written back byte for byte as before; the msgspec
encoder and decoder write and read what the old ones did (``dunning_state_reference``),
on the captured rows and on random accounts.

``data/account_states.json`` holds the columns and ``state`` text the previous encoder
(``Account.state_json`` in the old ``domain.py``) wrote after each input of the journeys
below; it was generated before the encoder moved to storage.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dunning_state_reference as reference
import pytest
from dunning_fixtures import CONTACT, disputed, issued, paid, resolved, reversed_, settled
from hypothesis import given, settings
from hypothesis import strategies as st

from dunning_events import Event, NotificationSent
from dunning_svc import storage
from dunning_svc.core import (
    Account,
    AgreePlan,
    Input,
    InvoiceState,
    Pause,
    Paused,
    Plan,
    Promise,
    Received,
    RecordPromise,
    Resume,
    SetContacts,
    Tick,
    WriteOff,
    decide,
)
from dunning_svc.policy import shipped_policy

STATES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "account_states.json").read_text()
)
FEE = {"kind": "percent_per_month", "percent": "1.5", "cap": "40.00"}
ESCALATION = {"name": "Credit Control", "email": "cc@acme.example"}


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


SENT = NotificationSent(
    account_id="ACME-42",
    notification_id="NTF-1",
    channel="email",
    sent_at=datetime(2026, 2, 27, 11, tzinfo=UTC),
)
JOURNEYS: dict[str, list[tuple[str, Input | Event, datetime]]] = {
    "standard": [
        ("issued", issued("INV-1", late_fee=FEE), at(date(2026, 2, 2))),
        ("issued2", issued("INV-2", amount="80.50", due=date(2026, 3, 20)), at(date(2026, 2, 3))),
        ("reminded", Tick(), at(date(2026, 3, 2))),
        ("sent", SENT, at(date(2026, 2, 27), 12)),
        ("contacts", SetContacts(CONTACT, ESCALATION, by="ops"), at(date(2026, 2, 4))),
        ("overdue_fee", Tick(), at(date(2026, 3, 20))),
        (
            "paid_part",
            paid("PAY-1", ("INV-1", "200.00"), at=datetime(2026, 3, 21, 9, tzinfo=UTC)),
            at(date(2026, 3, 21)),
        ),
        ("disputed", disputed("INV-2", "30.00"), at(date(2026, 3, 22))),
        (
            "promise",
            RecordPromise("P-1", "EUR", 50000, date(2026, 3, 30), by="dana"),
            at(date(2026, 3, 23)),
        ),
        (
            "paid_promise",
            paid("PAY-2", ("INV-1", "100.00"), at=datetime(2026, 3, 24, 9, tzinfo=UTC)),
            at(date(2026, 3, 24)),
        ),
        ("reversed", reversed_("PAY-1", ("INV-1", "200.00")), at(date(2026, 3, 25))),
        (
            "plan",
            AgreePlan(
                "PL-1", "EUR", ((date(2026, 4, 1), 30000), (date(2026, 5, 1), 70000)), by="dana"
            ),
            at(date(2026, 3, 26)),
        ),
        ("resume", Resume(by="dana"), at(date(2026, 3, 27))),
        (
            "pause",
            Pause("customer on holiday", date(2026, 4, 20), by="dana"),
            at(date(2026, 3, 28)),
        ),
        ("pause_open", Pause("talks", None, by="ops"), at(date(2026, 3, 29))),
        ("resume2", Resume(by="ops"), at(date(2026, 3, 30))),
        ("final", Tick(), at(date(2026, 4, 14))),
        ("resolved", resolved("INV-2", "upheld", "20.50", "30.00"), at(date(2026, 4, 15))),
        ("late", Tick(), at(date(2026, 5, 20))),
        ("writeoff", WriteOff("bankrupt", by="cfo"), at(date(2026, 5, 21))),
    ],
    "strategic": [
        (
            "s_issued",
            issued(
                "INV-9",
                amount="90000.00",
                segment="strategic",
                late_fee={"kind": "flat", "amount": "25.00"},
            ),
            at(date(2026, 2, 2)),
        ),
        ("s_late", Tick(), at(date(2026, 6, 1))),
        ("s_settled", settled("INV-9", "90000.00"), at(date(2026, 6, 2))),
    ],
}


def _row(stored: dict[str, Any]) -> SimpleNamespace:
    def instant(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    return SimpleNamespace(
        **{
            **stored,
            "last_contact_at": instant(stored["last_contact_at"]),
            "next_action_at": instant(stored["next_action_at"]),
        }
    )


@pytest.mark.parametrize("name", sorted(STATES))
def test_a_stored_row_decodes_and_encodes_back_byte_for_byte(name: str) -> None:
    stored = STATES[name]
    account = storage.to_account(_row(stored))
    now = account.next_action_at or datetime(2026, 6, 3, tzinfo=UTC)
    columns = storage.columns_of(account, account.local_today(now), now)
    assert columns["state"] == stored["state"]
    assert (columns["stage"], columns["paused"]) == (stored["stage"], stored["paused"])
    assert account.last_contact_at == _row(stored).last_contact_at


@pytest.mark.parametrize("segment", sorted(JOURNEYS))
def test_the_core_and_the_encoder_write_what_the_old_encoder_wrote(segment: str) -> None:
    policy = shipped_policy(segment)
    account = Account("acme", "ACME-42")
    for name, input, now in JOURNEYS[segment]:
        account, _, _ = decide(account, input, policy, now)
        assert storage.dumps(storage.state_of(account)) == STATES[name]["state"], name
        assert storage.to_account(_row(STATES[name])) == account, name


def test_a_row_written_before_fees_and_last_sent_were_stored_still_reads() -> None:
    stored = dict(STATES["overdue_fee"])
    state = json.loads(stored["state"])
    del state["fees"], state["last_sent"]
    stored["state"] = json.dumps(state)
    account = storage.to_account(_row(stored))
    assert account.fees_charged == [] and account.last_sent_at is None
    assert account.stage == "overdue_3" and account.promise is None


# -- the msgspec encoder and decoder against the old ones (dunning_state_reference) --------

CURRENCIES = st.sampled_from(["EUR", "USD", "JPY", "KWD", "CLF"])
TEXT = st.text(max_size=12)  # any code point but lone surrogates: DEL, controls, astral
IDS = st.text(min_size=1, max_size=8)
MINOR = st.integers(0, 10**16)
INSTANTS = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]))
JSON_OBJECTS = st.none() | st.dictionaries(TEXT, st.none() | TEXT | st.booleans() | MINOR)


@st.composite
def invoices(draw: st.DrawFn) -> dict[str, InvoiceState]:
    found: dict[str, InvoiceState] = {}
    for invoice_id in draw(st.lists(IDS, unique=True, max_size=4)):
        found[invoice_id] = InvoiceState(
            invoice_id,
            currency=draw(CURRENCIES),
            issued=draw(st.booleans()),
            amount_due=draw(MINOR),
            issue_date=draw(st.none() | st.dates()),
            due_date=draw(st.none() | st.dates()),
            payments=draw(st.dictionaries(IDS, MINOR, max_size=3)),
            credited=draw(MINOR),
            disputed=draw(MINOR),
            void=draw(st.booleans()),
            settled=draw(st.booleans()),
            late_fee=draw(JSON_OBJECTS),
            contact=draw(JSON_OBJECTS),
            number=draw(st.none() | TEXT),
            kind=draw(TEXT),
        )
    return found


ACCOUNTS = st.builds(
    Account,
    tenant=IDS,
    account_id=IDS,
    account_name=TEXT,
    contact=JSON_OBJECTS,
    escalation_contact=JSON_OBJECTS,
    segment=TEXT,
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata"]),
    locale=TEXT,
    invoices=invoices(),
    payments=st.dictionaries(IDS, st.builds(Received, CURRENCIES, MINOR, INSTANTS), max_size=3),
    reversed_payments=st.sets(IDS, max_size=3),
    stage=TEXT,
    sequence=st.integers(0, 10**6),
    cycle=st.integers(0, 10**6),
    steps_done=st.lists(TEXT, max_size=3),
    reminded=st.lists(TEXT, max_size=3),
    fees_charged=st.lists(TEXT, max_size=3),
    policy_version=st.none() | st.integers(0, 10**6),
    pause=st.none() | st.builds(Paused, TEXT, st.none() | st.dates(), TEXT),
    promise=st.none() | st.builds(Promise, IDS, CURRENCIES, MINOR, st.dates(), INSTANTS),
    plan=st.none()
    | st.builds(
        Plan,
        IDS,
        CURRENCIES,
        st.lists(st.tuples(st.dates(), MINOR), max_size=4).map(tuple),
        INSTANTS,
    ),
    credit_hold=st.booleans(),
    handoff=st.none() | TEXT,
    written_off=st.booleans(),
    last_contact_at=st.none() | INSTANTS,
    last_sent_at=st.none() | INSTANTS,
    next_action_at=st.none() | INSTANTS,
)


def _stored(account: Account, state: str) -> SimpleNamespace:
    """The row the database hands back for ``account`` with ``state``."""
    columns = storage.columns_of(account, date(2026, 3, 5), datetime(2026, 3, 5, tzinfo=UTC))
    return SimpleNamespace(
        **{**columns, "state": state, "tenant": account.tenant, "account_id": account.account_id}
    )


@pytest.mark.parametrize("name", sorted(STATES))
def test_every_captured_row_reads_as_the_old_decoder_read_it(name: str) -> None:
    row = _row(STATES[name])
    assert storage.to_account(row) == reference.to_account(row)


@settings(max_examples=200, deadline=None)
@given(ACCOUNTS)
def test_the_encoder_writes_the_old_bytes_and_both_decoders_read_them_back(
    account: Account,
) -> None:
    old = reference.dumps(reference.state_of(account))
    assert storage.state_of(account) == reference.state_of(account)
    row = _stored(account, old)
    assert row.state == old  # columns_of writes what the old encoder wrote
    assert storage.to_account(row) == account == reference.to_account(row)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_dumps_writes_what_json_dumps_wrote(value: Any) -> None:
    # Floats never reach the state (amounts are integers, texts are strings).
    assert storage.dumps(value) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize(
    "text", ["Müller GmbH", "del \x7f", "tab\t\x00\x1f", "emoji \U0001f600", "€ \u2028", "\ud800"]
)
def test_non_ascii_and_lone_surrogates_are_written_and_read_as_before(text: str) -> None:
    account = Account("acme", "ACME-42", account_name=text, contact={"name": text})
    account.pause = Paused(text, None, "ops")
    old = reference.dumps(reference.state_of(account))
    row = _stored(account, old)
    assert row.state == old
    assert storage.to_account(row) == account == reference.to_account(row)
