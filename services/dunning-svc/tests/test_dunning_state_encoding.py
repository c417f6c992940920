"""The state column's encoder: rows written before the core had typed records decode to
the same account, and an account is written back byte for byte as before.

``data/account_states.json`` holds the columns and ``state`` text the previous encoder
(``Account.state_json`` in the old ``domain.py``) wrote after each input of the journeys
below; it was generated before the encoder moved to storage.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dunning_fixtures import CONTACT, disputed, issued, paid, resolved, reversed_, settled

from dunning_events import Event, NotificationSent
from dunning_svc import storage
from dunning_svc.core import (
    Account,
    AgreePlan,
    Input,
    Pause,
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
