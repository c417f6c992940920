"""What goes out: notices, the handoff and late fees, composed from the account.

Notices are built without validation (``built``, what ``model_construct`` builds) where
every part comes from validated events, the policy and the money helpers here (the
domain and property tests validate what this produces).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel

from dunning_events import (
    Channel,
    CollectionsHandoffRequested,
    Contact,
    LateFeeAssessed,
    Money,
    NoticeInvoice,
    NotificationRequested,
)
from dunning_events.invoices import FEE_MONTH_DAYS, late_fee
from dunning_events.money import from_minor, quantize
from dunning_svc.core.account import Account, InvoiceState
from dunning_svc.core.context import Decision
from dunning_svc.policy import CURRENT, Policy, Step


@dataclass(frozen=True)
class NextStep:
    """What follows a step if nothing is paid: the stage, in how many days, and the same
    in English words for the notice's ``next_step``."""

    stage: str
    days: int
    text: str


def after_reminder(policy: Policy, reminder: Step) -> NextStep | None:
    """After a pre-due reminder: the ladder's first step, counted from the reminder."""
    if not policy.ladder:
        return None
    first = policy.ladder[0]
    days = (reminder.days_before_due or 0) + (first.days_past_due or 0)
    return NextStep(first.stage, days, "a notice listing every overdue invoice after the due date")


def next_step(policy: Policy, step: Step) -> NextStep | None:
    """The ladder's step after ``step``, with the days between them."""
    # Asked at every step taken, always with the same answer per policy and stage.
    memo, key = policy.memo, ("next_step", step.stage)
    if key not in memo:
        memo[key] = next_step_computed(policy, step)
    found: NextStep | None = memo[key]
    return found


def next_step_computed(policy: Policy, step: Step) -> NextStep | None:
    """``next_step`` worked out from the policy (what the memo holds)."""
    nxt = policy.following.get(step.stage)
    if nxt is None:
        return None
    gap = max(0, (nxt.days_past_due or 0) - (step.days_past_due or 0))
    what = (
        "handoff to a collection agency"
        if "handoff" in nxt.actions
        else nxt.stage.replace("_", " ")
    )
    return NextStep(nxt.stage, gap, f"{what} in {gap} days")


M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__
_FIELD_SETS: dict[type[BaseModel], set[str]] = {}


def built(cls: type[M], values: dict[str, Any]) -> M:
    """``cls.model_construct(**values)`` for ``values`` that name every field of ``cls``
    in their order (it has no aliases, private attributes nor post-init): the same
    model, without ``model_construct``'s walk over the fields, which cost a fifth of a
    timer sweep's decision. ``values`` becomes the model's ``__dict__``."""
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    # Every field is named, so the fields set is the class's: a copy of it is cheaper
    # than a set of the dict's keys.
    fields = _FIELD_SETS.get(cls)
    if fields is None:
        fields = _FIELD_SETS[cls] = set(cls.model_fields)
    _set(
        model,
        "__pydantic_fields_set__",
        fields.copy() if len(fields) == len(values) else set(values),
    )
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


@lru_cache(maxsize=65_536)
def as_money(minor: int, currency: str) -> Money:
    """``minor`` units of ``currency`` as ``Money`` (one shared instance per amount)."""
    # from_minor gives exactly the currency's places, so the result is a valid Money;
    # Money is frozen, so one instance can serve every event that states the amount.
    return Money.model_construct(currency=currency, amount=from_minor(minor, currency))


def _contact(data: dict[str, Any]) -> Contact:
    return _contact_of(tuple(sorted(data.items())))


@lru_cache(maxsize=65_536)
def _contact_of(items: tuple[tuple[str, Any], ...]) -> Contact:
    # Contacts reach the state only through validated events and request bodies.
    values: dict[str, Any] = {"email": None, "phone": None, **dict(items)}
    return Contact.model_construct(**values)


def key(*parts: object) -> str:
    """A short stable hash of ``parts``: the ids of notices and fee invoices."""
    return _hashed(_joined(parts))


def _joined(parts: Sequence[object]) -> str:
    return "\x1f".join(map(str, parts))


def _hashed(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def recipient(account: Account, oldest: InvoiceState | None) -> dict[str, Any]:
    """Who a notice goes to: the account's contact, else an invoice's, else its name."""
    if account.contact is not None:
        return account.contact
    if oldest is not None and oldest.contact is not None:
        return oldest.contact
    for invoice in account.invoices.values():
        if invoice.contact is not None:
            return invoice.contact
    return {"name": account.account_name or account.account_id[:200]}


def _addressees(
    d: Decision, stage: str, oldest: InvoiceState | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The recipient and the copies: the escalation contact joins (or takes over) from
    the policy's ``escalation_contact.from_stage`` on."""
    to = recipient(d.account, oldest)
    escalation = d.account.escalation_contact
    policy = d.policy
    if (
        escalation is not None
        and stage != CURRENT
        and policy.rank(stage) >= policy.rank(policy.escalation_contact.from_stage)
    ):
        if policy.escalation_contact.mode == "to":
            return escalation, [to]
        return to, [escalation]
    return to, []


def _listed(account: Account, listed: list[InvoiceState], today: date) -> list[NoticeInvoice]:
    return [
        built(
            NoticeInvoice,
            {
                "invoice_id": i.invoice_id,
                "number": i.number,
                "amount_due": as_money(i.amount_due, i.currency),
                "balance": as_money(account.balance(i), i.currency),
                "due_date": i.due_date,
                "days_past_due": (today - i.due_date).days,
            },
        )
        for i in listed[:1000]
        if i.amount_due > 0 and i.due_date is not None
    ]


def _listing(
    d: Decision, stage: str
) -> tuple[Contact, list[Contact], list[NoticeInvoice], list[Money], list[Money]]:
    """What the channels' notices share: the recipient, the copies, the invoices listed
    and the overdue and open totals (frozen models, so the notices share them)."""
    account, today = d.account, d.today
    open_ = account.open_invoices() if d.open_invoices is None else d.open_invoices
    overdue = [i for i in open_ if i.due_date is not None and i.due_date < today]
    to, cc = _addressees(d, stage, overdue[0] if overdue else (open_[0] if open_ else None))
    if stage == CURRENT:
        return _contact(to), [_contact(c) for c in cc], [], [], []
    total_open = _money(account.totals(open_))
    # Overdue invoices are open ones: as many means the same (a sweep's usual case).
    same = len(overdue) == len(open_)
    total_overdue = total_open.copy() if same else _money(account.totals(overdue))
    return (
        _contact(to),
        [_contact(c) for c in cc],
        _listed(account, open_, today),
        total_overdue,
        total_open,
    )


def _money(totals: dict[str, int]) -> list[Money]:
    return [as_money(m, c) for c, m in totals.items()]


def notices(
    d: Decision,
    stage: str,
    channels: Sequence[Channel],
    template: str,
    *,
    not_before: datetime,
    fee: Money | None = None,
    then: NextStep | None = None,
    moment: Sequence[str] = (),
) -> list[NotificationRequested]:
    """One notice per channel; what they list is worked out once for all of them.

    A notice's id is its idempotency key at notify-svc: one per contact moment and
    channel. A stage change makes the moment (cycle, sequence, stage); ``moment`` adds
    what else tells two contacts in one stage apart (a reminder per invoice falling due).
    ``then`` is what follows if nothing is paid.
    """
    if not channels:
        return []
    account, chasing = d.account, stage != CURRENT
    recipient_contact, cc_contacts, invoices, total_overdue, total_open = _listing(d, stage)
    name = account.account_name or account.account_id[:200]
    # key(*ids, channel, *moment), with what the channels share joined once.
    ids = _joined((account.tenant, account.account_id, account.cycle, account.sequence, stage))
    moments = "".join(f"\x1f{part}" for part in moment)
    # A thank-you is no chase: the cap does not hold it (nor dunning-svc's steps).
    cap = d.policy.contact_cap_days if chasing else 0
    # What the channels' notices share, in the fields' order; each notice copies it
    # (the copy keeps the order) and fills in its id and channel.
    shared: dict[str, Any] = {
        "account_id": account.account_id,
        "notification_id": None,
        "account_name": name,
        "stage": stage,
        "stage_sequence": account.sequence,
        "channel": None,
        "template": template,
        "locale": account.locale,
        "timezone": account.timezone,
        "recipient": recipient_contact,
        "cc": cc_contacts,
        "invoices": invoices,
        "total_overdue": total_overdue,
        "total_open": total_open,
        "fee": fee,
        "next_step": then.text if then else None,
        "next_stage": then.stage if then else None,
        "next_step_in_days": then.days if then else None,
        "not_before": not_before,
        "contact_cap_days": cap,
    }
    return [
        _notice(shared, channel, "NTF-" + _hashed(f"{ids}\x1f{channel}{moments}"))
        for channel in channels
    ]


def _notice(shared: dict[str, Any], channel: str, notification_id: str) -> NotificationRequested:
    """One channel's notice from what the channels share (copied: the order stays)."""
    values = shared.copy()
    values["notification_id"], values["channel"] = notification_id, channel
    # Each notice has lists of its own, as before (the records in them are frozen).
    for name in ("cc", "invoices", "total_overdue", "total_open"):
        values[name] = values[name].copy()
    return built(NotificationRequested, values)


def handoff(account: Account, today: date, reason: str) -> CollectionsHandoffRequested:
    """The request to hand the account to collections, with its overdue balance."""
    overdue = account.overdue_invoices(today)
    balance = [as_money(m, c) for c, m in account.totals(overdue).items() if m > 0]
    if not balance:  # approved after everything was paid: hand off what is open
        balance = [as_money(m, c) for c, m in account.totals(account.open_invoices()).items()]
    return CollectionsHandoffRequested(
        account_id=account.account_id,
        overdue_balance=balance,
        oldest_days_past_due=account.oldest_days_past_due(today),
        reason=reason,
    )


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _from_terms(
    terms: dict[str, Any], balance: Decimal, currency: str, days: int, invoice_id: str
) -> tuple[Decimal, str]:
    """The fee the invoice's terms charge on ``balance`` ``days`` overdue, and how."""
    amount = late_fee(
        balance,
        currency,
        kind=terms["kind"],
        days_overdue=days,
        amount=_decimal(terms.get("amount")),
        percent=_decimal(terms.get("percent")),
        cap=_decimal(terms.get("cap")),
    )
    if terms["kind"] == "flat":
        return amount, f"flat late fee of {amount} {currency} from the terms of {invoice_id}"
    months = -(-days // FEE_MONTH_DAYS)
    how = (
        f"{terms['percent']}% of {balance} {currency} per started month overdue "
        f"({months} months) on {invoice_id}"
    )
    if terms.get("cap") is not None and amount == quantize(Decimal(terms["cap"]), currency):
        how += f", capped at {terms['cap']}"
    return amount, how


def fee(account: Account, step: Step, today: date, invoice: InvoiceState) -> LateFeeAssessed | None:
    """The late fee ``step`` charges on ``invoice`` (the oldest chased), if any: the
    invoice's terms when the step takes them, else the step's own amount."""
    assert step.fee is not None and invoice.due_date is not None
    currency = invoice.currency
    balance = from_minor(account.balance(invoice), currency)
    amount: Decimal | None = None
    terms = invoice.late_fee if step.fee.from_terms else None
    if terms is not None:
        days = max(1, (today - invoice.due_date).days)
        amount, how = _from_terms(terms, balance, currency, days, invoice.invoice_id)
    if amount is None and step.fee.amount is not None:
        amount = step.fee.amount
        how = f"policy fee of {amount} {currency} at {step.stage}"
    if amount is None:
        return None
    amount = quantize(amount, currency, rounding=ROUND_HALF_UP)
    if amount <= 0:
        return None
    return LateFeeAssessed.model_validate(
        {
            "account_id": account.account_id,
            "fee_invoice_id": "FEE-"
            + key(account.tenant, account.account_id, account.cycle, step.stage),
            "invoice_id": invoice.invoice_id,
            "amount": Money(amount=amount, currency=currency),
            "stage": step.stage,
            "assessed_on": today,
            "reason": how,
            "account_name": account.account_name or account.account_id[:200],
            "contact": recipient(account, invoice),
            "segment": account.segment,
            "timezone": account.timezone,
            "locale": account.locale,
        }
    )
