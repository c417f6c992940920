"""One decision in progress: what every step of it reads, and what it has produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from dunning_events import Event
from dunning_svc.core.account import Account, InvoiceState
from dunning_svc.core.calendar import zone_of
from dunning_svc.policy import BusinessHours, Policy


@dataclass(slots=True)
class Decision:
    """The account being decided on under ``policy`` at ``now`` (``today`` is its local
    date), with the commands (``out``), reasons and wake-up instants found so far.

    Passed to every step instead of the same nine parameters; the lists are appended to.
    """

    account: Account
    policy: Policy
    now: datetime
    today: date
    out: list[Event] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    wakes: list[datetime] = field(default_factory=list)
    #: The account's open invoices, once the escalation has listed them (it changes no
    #: invoice, so its notices list the same ones); None until then.
    open_invoices: list[InvoiceState] | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The account's time zone."""
        return zone_of(self.account.timezone)

    @property
    def hours(self) -> BusinessHours:
        """The policy's business hours."""
        return self.policy.business_hours
