"""Every dunning decision, as pure functions of (account, input, policy, now).

``decide(account, input, policy, now) -> (account, commands, reasons)``: the input is an
event from another service (invoices, payments, notifications), a manual action (a
promise, a plan, a pause, an approval, a write-off, contacts) or ``Tick`` (the account's
timer fired). The account is a projection of the events; the commands are the events
dunning-svc publishes (``NotificationRequested`` and the facts on ``dunning.events``);
the reasons say why, for the timeline. No IO here: the shell loads, stores and emits.

Amounts are integers of the currency's minor unit; dates are the account's local dates.

The modules, one job each: ``errors`` (what the rules refuse), ``account`` (the
projection and its records), ``inputs`` (timer and manual actions), ``actions`` (events
and manual actions folded in), ``ladder`` (the escalation), ``notices`` (what goes
out), ``calendar`` (business hours), ``context`` (one decision in progress) and
``fold`` (``decide`` and the one fold behind it).
"""

from dunning_svc.core.account import Account, InvoiceState, Paused, Plan, Promise, Received
from dunning_svc.core.errors import DunningConflict, DunningRuleError
from dunning_svc.core.fold import Folded, apply, decide, decide_in_place, fold
from dunning_svc.core.inputs import (
    AgreePlan,
    ApproveHandoff,
    Input,
    ManualAction,
    Pause,
    RecordPromise,
    Resume,
    SetContacts,
    Tick,
    WriteOff,
)
from dunning_svc.policy import CURRENT

__all__ = [
    "CURRENT",
    "Account",
    "AgreePlan",
    "ApproveHandoff",
    "DunningConflict",
    "DunningRuleError",
    "Folded",
    "Input",
    "InvoiceState",
    "ManualAction",
    "Pause",
    "Paused",
    "Plan",
    "Promise",
    "Received",
    "RecordPromise",
    "Resume",
    "SetContacts",
    "Tick",
    "WriteOff",
    "apply",
    "decide",
    "decide_in_place",
    "fold",
]
