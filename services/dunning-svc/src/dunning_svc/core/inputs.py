"""The inputs that are not events: the account's timer and the manual actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from dunning_events import Event


@dataclass(frozen=True)
class Tick:
    """The account's timer fired (or a scheduler looked at it): re-evaluate as of now."""


@dataclass(frozen=True)
class RecordPromise:
    """A collector recorded the customer's promise to pay ``amount`` by ``promised_date``."""

    promise_id: str
    currency: str
    amount: int
    promised_date: date
    by: str


@dataclass(frozen=True)
class AgreePlan:
    """A payment plan: ``installments`` are ``(due_date, minor amount)`` in order."""

    plan_id: str
    currency: str
    installments: tuple[tuple[date, int], ...]
    by: str


@dataclass(frozen=True)
class Pause:
    """Pause escalation by hand, until ``until`` (a local date) or a resume."""

    reason: str
    until: date | None
    by: str


@dataclass(frozen=True)
class Resume:
    """End a manual pause, a promise or a plan by hand."""

    by: str


@dataclass(frozen=True)
class ApproveHandoff:
    """A person approves the handoff the policy holds for approval."""

    by: str


@dataclass(frozen=True)
class WriteOff:
    """Write the account's open balance off; nothing more is sent."""

    reason: str
    by: str


@dataclass(frozen=True)
class SetContacts:
    """Who receives notices: ``contact`` replaces the invoices' contact when given;
    ``escalation_contact`` hears from the policy's ``escalation_contact.from_stage``."""

    contact: dict[str, Any] | None
    escalation_contact: dict[str, Any] | None
    by: str


ManualAction = RecordPromise | AgreePlan | Pause | Resume | ApproveHandoff | WriteOff | SetContacts
Input = Event | ManualAction | Tick
