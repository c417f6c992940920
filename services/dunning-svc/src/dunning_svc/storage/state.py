"""The one encoder and decoder of an account's row and its JSON state.

The state column is read and written for every account a chunk or a sweep touches, so
both ways go through msgspec: a typed decode straight into records (no dicts between),
and an encode of the same records that writes the bytes ``json.dumps`` with compact
separators wrote (checked by tests/test_dunning_state_encoding.py on states captured
from the old encoder, and on random accounts by the property tests).
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from dunning_events.money import MINOR_UNITS, from_minor
from dunning_runtime.db import utc
from dunning_svc.core import Account, InvoiceState, Paused, Plan, Promise, Received
from dunning_svc.storage.tables import (
    E4,
)

# -- the state column: the one encoder and decoder of the account's state ------------------
# Short keys ("esc", "cur", "rem", ...) keep the column small; the core knows none of them.
# What is written must stay readable by every release that reads it: change keys only
# with a decoder that still reads the old ones. A record's fields are its keys in the
# order they are written. Dates are msgspec's ISO dates (as ``date.isoformat``); instants
# stay ISO text from ``datetime.isoformat`` (msgspec would write UTC as "Z").


class _Invoice(msgspec.Struct):
    id: str
    cur: str
    iss: bool
    due_amt: int
    issued_on: date | None
    due_on: date | None
    pay: dict[str, int]
    cred: int
    disp: int
    void: bool
    settled: bool
    fee: dict[str, Any] | None
    contact: dict[str, Any] | None
    number: str | None
    kind: str


class _Pause(msgspec.Struct):
    reason: str
    until: date | None
    by: str


class _Promise(msgspec.Struct):
    id: str
    cur: str
    amount: int
    date: date
    since: str


class _Plan(msgspec.Struct):
    id: str
    cur: str
    inst: list[tuple[date, int]]
    since: str


class _State(msgspec.Struct):
    name: str
    contact: dict[str, Any] | None
    esc: dict[str, Any] | None
    tz: str
    loc: str
    inv: list[_Invoice]
    pay: dict[str, tuple[str, int, str]]  # payment_id -> (currency, minor, received at)
    rev: list[str]
    seq: int
    cycle: int
    done: list[str]
    rem: list[str]
    fees: list[str] = []  # absent from rows written before fees were stored
    pause: _Pause | None = None
    promise: _Promise | None = None
    plan: _Plan | None = None
    hold: bool = False
    handoff: str | None = None
    last_sent: str | None = None  # absent from rows written before it was stored


_DECODE = msgspec.json.Decoder(_State)
_ENCODE = msgspec.json.Encoder()
# What json.dumps (ensure_ascii) escapes and msgspec writes as is: DEL and non-ASCII.
_UNESCAPED = re.compile("[\x7f-\U0010ffff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as json.dumps writes it
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def dumps(value: Any) -> str:
    """Compact JSON text of ``value`` (a state record or JSON types), byte for byte what
    ``json.dumps(value, separators=(",", ":"))`` writes."""
    try:
        raw = _ENCODE.encode(value)
    except UnicodeEncodeError:  # a lone surrogate: only the standard library writes it
        return json.dumps(msgspec.to_builtins(value), separators=(",", ":"))
    if raw.isascii() and b"\x7f" not in raw:
        return raw.decode("ascii")
    return _UNESCAPED.sub(_escaped, raw.decode())


def to_account(row: Any) -> Account:
    """An account from its row."""
    try:
        state = _DECODE.decode(row.state)
    except msgspec.DecodeError:
        # A lone surrogate escape ("\\ud800"), which json.dumps writes and msgspec does
        # not read: the standard library reads it.
        state = msgspec.convert(json.loads(row.state), _State)
    return _account(row, state)


def _record(account: Account) -> _State:
    """The ``state`` column's record of ``account``."""
    pause, promise, plan = account.pause, account.promise, account.plan
    invoices, last_sent = account.invoices, account.last_sent_at
    return _State(
        name=account.account_name,
        contact=account.contact,
        esc=account.escalation_contact,
        tz=account.timezone,
        loc=account.locale,
        inv=[_invoice_record(invoices[k]) for k in sorted(invoices)],
        pay={
            payment_id: (p.currency, p.amount, p.received_at.isoformat())
            for payment_id, p in account.payments.items()
        },
        rev=sorted(account.reversed_payments),
        seq=account.sequence,
        cycle=account.cycle,
        done=account.steps_done,
        rem=account.reminded,
        fees=account.fees_charged,
        pause=None if pause is None else _Pause(pause.reason, pause.until, pause.by),
        promise=None
        if promise is None
        else _Promise(
            id=promise.promise_id,
            cur=promise.currency,
            amount=promise.amount,
            date=promise.promised_date,
            since=promise.since.isoformat(),
        ),
        plan=None
        if plan is None
        else _Plan(
            id=plan.plan_id,
            cur=plan.currency,
            inst=list(plan.installments),
            since=plan.since.isoformat(),
        ),
        hold=account.credit_hold,
        handoff=account.handoff,
        last_sent=last_sent.isoformat() if last_sent else None,
    )


def _invoice_record(invoice: InvoiceState) -> _Invoice:
    return _Invoice(
        id=invoice.invoice_id,
        cur=invoice.currency,
        iss=invoice.issued,
        due_amt=invoice.amount_due,
        issued_on=invoice.issue_date,
        due_on=invoice.due_date,
        pay=invoice.payments,
        cred=invoice.credited,
        disp=invoice.disputed,
        void=invoice.void,
        settled=invoice.settled,
        fee=invoice.late_fee,
        contact=invoice.contact,
        number=invoice.number,
        kind=invoice.kind,
    )


def state_of(account: Account) -> dict[str, Any]:
    """Everything but the identity and the indexed columns, as JSON types (what the
    ``state`` column holds)."""
    state: dict[str, Any] = json.loads(dumps(_record(account)))
    return state


def _invoice_of(data: _Invoice) -> InvoiceState:
    return InvoiceState(
        invoice_id=data.id,
        currency=data.cur,
        issued=data.iss,
        amount_due=data.due_amt,
        issue_date=data.issued_on,
        due_date=data.due_on,
        payments=data.pay,
        credited=data.cred,
        disputed=data.disp,
        void=data.void,
        settled=data.settled,
        late_fee=data.fee,
        contact=data.contact,
        number=data.number,
        kind=data.kind,
    )


def _records_of(state: _State) -> tuple[Paused | None, Promise | None, Plan | None]:
    pause, promise, plan = state.pause, state.promise, state.plan
    return (
        None if pause is None else Paused(pause.reason, pause.until, pause.by),
        None
        if promise is None
        else Promise(
            promise.id,
            promise.cur,
            promise.amount,
            promise.date,
            datetime.fromisoformat(promise.since),
        ),
        None
        if plan is None
        else Plan(plan.id, plan.cur, tuple(plan.inst), datetime.fromisoformat(plan.since)),
    )


def _account(row: Any, state: _State) -> Account:
    """The account from its stored columns and decoded ``state`` (the inverse of
    ``_record``)."""
    pause, promise, plan = _records_of(state)
    last_sent = state.last_sent
    from_text = datetime.fromisoformat
    return Account(
        tenant=row.tenant,
        account_id=row.account_id,
        account_name=state.name,
        contact=state.contact,
        escalation_contact=state.esc,
        segment=row.segment,
        timezone=state.tz,
        locale=state.loc,
        invoices={i.id: _invoice_of(i) for i in state.inv},
        payments={
            payment_id: Received(currency, minor, from_text(at))
            for payment_id, (currency, minor, at) in state.pay.items()
        },
        reversed_payments=set(state.rev),
        stage=row.stage,
        sequence=state.seq,
        cycle=state.cycle,
        steps_done=state.done,
        reminded=state.rem,
        fees_charged=state.fees,
        policy_version=row.policy_version,
        pause=pause,
        promise=promise,
        plan=plan,
        credit_hold=state.hold,
        handoff=state.handoff,
        written_off=row.written_off,
        last_contact_at=utc(row.last_contact_at),
        last_sent_at=from_text(last_sent) if last_sent else None,
        next_action_at=utc(row.next_action_at),
    )


def columns_of(account: Account, today: date, now: datetime) -> dict[str, Any]:
    """The stored columns of ``account`` as of ``today`` (its local date)."""
    overdue = account.overdue_invoices(today)
    return {
        "segment": account.segment,
        "stage": account.stage,
        "policy_version": account.policy_version,
        "paused": account.paused,
        "written_off": account.written_off,
        "overdue_e4": overdue_e4(account.totals(overdue)),
        "oldest_due_date": overdue[0].due_date if overdue else None,
        "next_action_at": account.next_action_at,
        "last_contact_at": account.last_contact_at,
        "state": dumps(_record(account)),
        "updated_at": now,
    }


# Minor units -> ten-thousandths, per currency with at most four places (all of them).
_TO_E4 = {currency: 10 ** (4 - places) for currency, places in MINOR_UNITS.items() if places <= 4}


def overdue_e4(totals: dict[str, int]) -> int:
    """The ``overdue_e4`` column: the sum of ``totals`` (minor units per currency) in
    ten-thousandths, as ``int(sum(from_minor(...)) * E4)`` gives it."""
    try:
        # Integers only: every minor unit is a whole number of ten-thousandths.
        return sum(minor * _TO_E4[currency] for currency, minor in totals.items())
    except KeyError:  # no such currency: from_minor says why
        return overdue_e4_computed(totals)


def overdue_e4_computed(totals: dict[str, int]) -> int:
    """``overdue_e4`` through ``Decimal`` amounts (the fast path's reference)."""
    total = sum((from_minor(m, c) for c, m in totals.items()), start=Decimal(0))
    return int(total * E4)
