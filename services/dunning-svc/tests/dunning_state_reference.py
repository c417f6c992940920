"""The state column's encoder and decoder before they moved to msgspec, kept verbatim as
the reference the fast ones are proven equal to (tests/test_dunning_state_encoding.py):
``json.dumps`` of dicts, and ``json.loads`` to dicts then dict -> ``Account``."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from dunning_runtime.db import utc
from dunning_svc.core import Account, InvoiceState, Paused, Plan, Promise, Received


def dumps(value: Any) -> str:
    """Compact JSON text (the state column is read and written on every event)."""
    return json.dumps(value, separators=(",", ":"))


def to_account(row: Any) -> Account:
    """An account from its row."""
    return account_of(
        row.tenant,
        row.account_id,
        segment=row.segment,
        stage=row.stage,
        policy_version=row.policy_version,
        written_off=row.written_off,
        last_contact_at=utc(row.last_contact_at),
        next_action_at=utc(row.next_action_at),
        state=json.loads(row.state),
    )


# -- the state column: the one encoder and decoder of the account's state ------------------
# Short keys ("esc", "cur", "rem", ...) keep the column small; the core knows none of them.
# What is written must stay readable by every release that reads it: change keys only
# with a decoder that still reads the old ones.


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _from_day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _invoice_state(invoice: InvoiceState) -> dict[str, Any]:
    return {
        "id": invoice.invoice_id,
        "cur": invoice.currency,
        "iss": invoice.issued,
        "due_amt": invoice.amount_due,
        "issued_on": _day(invoice.issue_date),
        "due_on": _day(invoice.due_date),
        "pay": invoice.payments,
        "cred": invoice.credited,
        "disp": invoice.disputed,
        "void": invoice.void,
        "settled": invoice.settled,
        "fee": invoice.late_fee,
        "contact": invoice.contact,
        "number": invoice.number,
        "kind": invoice.kind,
    }


def _invoice_of(data: dict[str, Any]) -> InvoiceState:
    return InvoiceState(
        invoice_id=data["id"],
        currency=data["cur"],
        issued=data["iss"],
        amount_due=data["due_amt"],
        issue_date=_from_day(data["issued_on"]),
        due_date=_from_day(data["due_on"]),
        payments=dict(data["pay"]),
        credited=data["cred"],
        disputed=data["disp"],
        void=data["void"],
        settled=data["settled"],
        late_fee=data["fee"],
        contact=data["contact"],
        number=data["number"],
        kind=data["kind"],
    )


def _pause_state(pause: Paused | None) -> dict[str, Any] | None:
    if pause is None:
        return None
    return {"reason": pause.reason, "until": _day(pause.until), "by": pause.by}


def _promise_state(promise: Promise | None) -> dict[str, Any] | None:
    if promise is None:
        return None
    return {
        "id": promise.promise_id,
        "cur": promise.currency,
        "amount": promise.amount,
        "date": promise.promised_date.isoformat(),
        "since": promise.since.isoformat(),
    }


def _plan_state(plan: Plan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {
        "id": plan.plan_id,
        "cur": plan.currency,
        "inst": [[due.isoformat(), minor] for due, minor in plan.installments],
        "since": plan.since.isoformat(),
    }


def state_of(account: Account) -> dict[str, Any]:
    """Everything but the identity and the indexed columns, as JSON types (the ``state``
    column)."""
    return {
        "name": account.account_name,
        "contact": account.contact,
        "esc": account.escalation_contact,
        "tz": account.timezone,
        "loc": account.locale,
        "inv": [_invoice_state(account.invoices[k]) for k in sorted(account.invoices)],
        "pay": {
            payment_id: [p.currency, p.amount, p.received_at.isoformat()]
            for payment_id, p in account.payments.items()
        },
        "rev": sorted(account.reversed_payments),
        "seq": account.sequence,
        "cycle": account.cycle,
        "done": account.steps_done,
        "rem": account.reminded,
        "fees": account.fees_charged,
        "pause": _pause_state(account.pause),
        "promise": _promise_state(account.promise),
        "plan": _plan_state(account.plan),
        "hold": account.credit_hold,
        "handoff": account.handoff,
        "last_sent": account.last_sent_at.isoformat() if account.last_sent_at else None,
    }


def _records_of(state: dict[str, Any]) -> tuple[Paused | None, Promise | None, Plan | None]:
    pause, promise, plan = state["pause"], state["promise"], state["plan"]
    return (
        None if pause is None else Paused(pause["reason"], _from_day(pause["until"]), pause["by"]),
        None
        if promise is None
        else Promise(
            promise["id"],
            promise["cur"],
            promise["amount"],
            date.fromisoformat(promise["date"]),
            datetime.fromisoformat(promise["since"]),
        ),
        None
        if plan is None
        else Plan(
            plan["id"],
            plan["cur"],
            tuple((date.fromisoformat(due), minor) for due, minor in plan["inst"]),
            datetime.fromisoformat(plan["since"]),
        ),
    )


def account_of(
    tenant: str,
    account_id: str,
    *,
    segment: str,
    stage: str,
    policy_version: int | None,
    written_off: bool,
    last_contact_at: datetime | None,
    next_action_at: datetime | None,
    state: dict[str, Any],
) -> Account:
    """The account from its stored columns and ``state`` (the inverse of ``state_of``)."""
    last_sent = state.get("last_sent")
    pause, promise, plan = _records_of(state)
    return Account(
        tenant=tenant,
        account_id=account_id,
        account_name=state["name"],
        contact=state["contact"],
        escalation_contact=state["esc"],
        segment=segment,
        timezone=state["tz"],
        locale=state["loc"],
        invoices={i["id"]: _invoice_of(i) for i in state["inv"]},
        payments={
            payment_id: Received(currency, minor, datetime.fromisoformat(at))
            for payment_id, (currency, minor, at) in state["pay"].items()
        },
        reversed_payments=set(state["rev"]),
        stage=stage,
        sequence=state["seq"],
        cycle=state["cycle"],
        steps_done=list(state["done"]),
        reminded=list(state["rem"]),
        fees_charged=list(state.get("fees", [])),
        policy_version=policy_version,
        pause=pause,
        promise=promise,
        plan=plan,
        credit_hold=state["hold"],
        handoff=state["handoff"],
        written_off=written_off,
        last_contact_at=last_contact_at,
        last_sent_at=datetime.fromisoformat(last_sent) if last_sent else None,
        next_action_at=next_action_at,
    )
