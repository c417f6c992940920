"""The measurement that chose the dunning core's state records: frozen msgspec ``Struct``s
or slotted dataclasses (issue 16). Not part of ``make bench``; run it by hand:

    uv run python -m benchmarks.state_records

For an account's state (five invoices, three received payments, a promise, a plan) it
times, both ways: constructing the records, reading their fields as the ladder does,
encoding the state to its JSON text and decoding it back. The dataclasses are encoded
the way storage does it (a dict with the stored keys, then ``json.dumps``); the Structs
with ``msgspec.json``, keys renamed to the stored ones. A last pair times only the last
step, ``json.dumps``/``loads`` against ``msgspec.json`` on the same dicts (the bytes are
the same for ASCII text; msgspec writes other text as UTF-8 instead of ``\\u`` escapes).
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import msgspec

# -- slotted dataclasses ----------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class DReceived:
    currency: str
    amount: int
    received_at: datetime


@dataclass(slots=True, frozen=True)
class DPromise:
    promise_id: str
    currency: str
    amount: int
    promised_date: date
    since: datetime


@dataclass(slots=True, frozen=True)
class DPlan:
    plan_id: str
    currency: str
    installments: tuple[tuple[date, int], ...]
    since: datetime


@dataclass(slots=True)
class DInvoice:
    invoice_id: str
    currency: str
    amount_due: int
    due_date: date | None
    payments: dict[str, int] = field(default_factory=dict)
    credited: int = 0
    disputed: int = 0
    late_fee: dict[str, Any] | None = None


@dataclass(slots=True)
class DState:
    name: str
    invoices: dict[str, DInvoice]
    payments: dict[str, DReceived]
    reversed: set[str]
    promise: DPromise | None
    plan: DPlan | None


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def d_dict(s: DState) -> dict[str, Any]:
    """The state as storage encodes it: a dict with the stored keys."""
    return {
        "name": s.name,
        "inv": [
            {
                "id": i.invoice_id,
                "cur": i.currency,
                "due_amt": i.amount_due,
                "due_on": _day(i.due_date),
                "pay": i.payments,
                "cred": i.credited,
                "disp": i.disputed,
                "fee": i.late_fee,
            }
            for _, i in sorted(s.invoices.items())
        ],
        "pay": {
            k: [p.currency, p.amount, p.received_at.isoformat()] for k, p in s.payments.items()
        },
        "rev": sorted(s.reversed),
        "promise": None
        if s.promise is None
        else {
            "id": s.promise.promise_id,
            "cur": s.promise.currency,
            "amount": s.promise.amount,
            "date": s.promise.promised_date.isoformat(),
            "since": s.promise.since.isoformat(),
        },
        "plan": None
        if s.plan is None
        else {
            "id": s.plan.plan_id,
            "cur": s.plan.currency,
            "inst": [[d.isoformat(), m] for d, m in s.plan.installments],
            "since": s.plan.since.isoformat(),
        },
    }


def d_of(d: dict[str, Any]) -> DState:
    """The inverse of ``d_dict``."""
    p, pl = d["promise"], d["plan"]
    return DState(
        name=d["name"],
        invoices={
            i["id"]: DInvoice(
                i["id"],
                i["cur"],
                i["due_amt"],
                date.fromisoformat(i["due_on"]) if i["due_on"] else None,
                dict(i["pay"]),
                i["cred"],
                i["disp"],
                i["fee"],
            )
            for i in d["inv"]
        },
        payments={
            k: DReceived(c, m, datetime.fromisoformat(at)) for k, (c, m, at) in d["pay"].items()
        },
        reversed=set(d["rev"]),
        promise=None
        if p is None
        else DPromise(
            p["id"],
            p["cur"],
            p["amount"],
            date.fromisoformat(p["date"]),
            datetime.fromisoformat(p["since"]),
        ),
        plan=None
        if pl is None
        else DPlan(
            pl["id"],
            pl["cur"],
            tuple((date.fromisoformat(x), m) for x, m in pl["inst"]),
            datetime.fromisoformat(pl["since"]),
        ),
    )


# -- msgspec Structs --------------------------------------------------------------------


class SReceived(msgspec.Struct, frozen=True, array_like=True):
    currency: str
    amount: int
    received_at: datetime


class SPromise(msgspec.Struct, frozen=True):
    promise_id: str = msgspec.field(name="id")
    currency: str = msgspec.field(name="cur")
    amount: int = 0
    promised_date: date = msgspec.field(name="date", default=date.min)
    since: datetime = datetime.min


class SPlan(msgspec.Struct, frozen=True):
    plan_id: str = msgspec.field(name="id")
    currency: str = msgspec.field(name="cur")
    installments: tuple[tuple[date, int], ...] = msgspec.field(name="inst", default=())
    since: datetime = datetime.min


class SInvoice(msgspec.Struct):
    invoice_id: str = msgspec.field(name="id")
    currency: str = msgspec.field(name="cur")
    amount_due: int = msgspec.field(name="due_amt")
    due_date: date | None = msgspec.field(name="due_on")
    payments: dict[str, int] = msgspec.field(name="pay", default_factory=dict)
    credited: int = msgspec.field(name="cred", default=0)
    disputed: int = msgspec.field(name="disp", default=0)
    late_fee: dict[str, Any] | None = msgspec.field(name="fee", default=None)


class SState(msgspec.Struct):
    name: str
    invoices: list[SInvoice] = msgspec.field(name="inv")
    payments: dict[str, SReceived] = msgspec.field(name="pay")
    reversed: list[str] = msgspec.field(name="rev")
    promise: SPromise | None = None
    plan: SPlan | None = None


ENCODER = msgspec.json.Encoder()
DECODER = msgspec.json.Decoder(SState)
ANY_DECODER = msgspec.json.Decoder()

# -- the workload -----------------------------------------------------------------------

FEE = {"kind": "flat", "amount": "25.00", "percent": None, "cap": None}
SINCE = datetime(2026, 3, 23, 10, tzinfo=UTC)
INSTALLMENTS = ((date(2026, 4, 1), 30000), (date(2026, 5, 1), 70000))


def build_d() -> DState:
    """The dataclass state."""
    return DState(
        "ACME GmbH",
        {
            f"INV-{n}": DInvoice(
                f"INV-{n}", "EUR", 125000, date(2026, 3, n), {"PAY-1": 2000}, late_fee=FEE
            )
            for n in range(1, 6)
        },
        {f"PAY-{n}": DReceived("EUR", 2000 * n, SINCE) for n in range(1, 4)},
        {"PAY-2"},
        DPromise("P-1", "EUR", 50000, date(2026, 3, 30), SINCE),
        DPlan("PL-1", "EUR", INSTALLMENTS, SINCE),
    )


def build_s() -> SState:
    """The Struct state."""
    return SState(
        "ACME GmbH",
        [
            SInvoice(f"INV-{n}", "EUR", 125000, date(2026, 3, n), {"PAY-1": 2000}, late_fee=FEE)
            for n in range(1, 6)
        ],
        {f"PAY-{n}": SReceived("EUR", 2000 * n, SINCE) for n in range(1, 4)},
        ["PAY-2"],
        SPromise("P-1", "EUR", 50000, date(2026, 3, 30), SINCE),
        SPlan("PL-1", "EUR", INSTALLMENTS, SINCE),
    )


def access(s: DState | SState) -> int:
    """What the ladder reads: every payment against the promise, every invoice's amounts,
    the plan's installments."""
    assert s.promise is not None and s.plan is not None
    total = 0
    for p in s.payments.values():
        if p.currency == s.promise.currency and p.received_at >= s.promise.since:
            total += p.amount
    invoices = s.invoices.values() if isinstance(s.invoices, dict) else s.invoices
    for i in invoices:
        total += i.amount_due - i.credited - i.disputed
    return total + sum(m for _, m in s.plan.installments)


def d_round_trip(text: str) -> str:
    state = d_of(json.loads(text))
    access(state)
    return json.dumps(d_dict(state), separators=(",", ":"))


def s_round_trip(text: bytes) -> bytes:
    state = DECODER.decode(text)
    access(state)
    return ENCODER.encode(state)


def main(number: int = 20_000) -> None:
    """Print microseconds per operation, both ways, and the ratio."""
    d, s = build_d(), build_s()
    dicts = d_dict(d)
    dtext = json.dumps(dicts, separators=(",", ":"))
    stext = ENCODER.encode(s)
    cases: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "construct": (build_d, build_s),
        "attribute access": (lambda: access(d), lambda: access(s)),
        "encode to JSON text": (
            lambda: json.dumps(d_dict(d), separators=(",", ":")),
            lambda: ENCODER.encode(s),
        ),
        "decode from JSON text": (lambda: d_of(json.loads(dtext)), lambda: DECODER.decode(stext)),
        "decode + access + encode": (lambda: d_round_trip(dtext), lambda: s_round_trip(stext)),
        "same dicts: json vs msgspec.json": (
            lambda: json.loads(json.dumps(dicts, separators=(",", ":"))),
            lambda: ANY_DECODER.decode(ENCODER.encode(dicts)),
        ),
    }
    print(f"state JSON: {len(dtext)} bytes (dataclass way), {len(stext)} bytes (Struct way)")
    print(f"{'':36}{'dataclass µs':>14}{'Struct µs':>12}{'ratio':>8}")
    for name, (with_d, with_s) in cases.items():
        td = min(timeit.repeat(with_d, number=number, repeat=5)) / number * 1e6
        ts = min(timeit.repeat(with_s, number=number, repeat=5)) / number * 1e6
        print(f"{name:36}{td:14.2f}{ts:12.2f}{td / ts:8.1f}x")


if __name__ == "__main__":
    main()
