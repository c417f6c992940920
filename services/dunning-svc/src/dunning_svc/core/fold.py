"""``decide`` and the one fold behind it: apply the input, then escalate."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from dunning_events import Event
from dunning_svc.core.account import Account
from dunning_svc.core.actions import apply_input
from dunning_svc.core.context import Decision
from dunning_svc.core.inputs import Input
from dunning_svc.core.ladder import escalate
from dunning_svc.policy import Policy


@dataclass(frozen=True, slots=True)
class Folded:
    """What one input did: the commands, the reasons of applying it and of the escalation
    after it, and the policy the escalation ran on."""

    commands: list[Event]
    applied: list[str]
    decided: list[str]
    policy: Policy


def fold(
    account: Account, input: Input, policy_of: Callable[[Account], Policy], now: datetime
) -> Folded:
    """Apply ``input`` to ``account`` in place at ``now``, then escalate it.

    ``policy_of`` gives the policy the account runs on; it is asked again after the
    input, which may have named the account's segment (``InvoiceIssued``). Manual
    actions the rules refuse raise ``DunningRuleError``.
    """
    commands: list[Event] = []
    applied: list[str] = []
    policy = policy_of(account)
    apply_input(Decision(account, policy, now, account.local_today(now), commands, applied), input)
    policy = policy_of(account)
    decided: list[str] = []
    escalate(Decision(account, policy, now, account.local_today(now), commands, decided))
    return Folded(commands, applied, decided, policy)


def apply(
    account: Account,
    input: Input,
    policy: Policy,
    now: datetime,
    out: list[Event],
    reasons: list[str],
) -> None:
    """Fold ``input`` into the account (no escalation), appending to ``out`` and
    ``reasons``; manual actions that the rules refuse raise ``DunningRuleError`` and
    change nothing."""
    apply_input(Decision(account, policy, now, account.local_today(now), out, reasons), input)


def decide_in_place(
    account: Account, input: Input, policy: Policy, now: datetime
) -> tuple[list[Event], list[str]]:
    """``decide`` changing ``account`` itself (the batch handler owns the copy it loaded)."""
    folded = fold(account, input, lambda _: policy, now)
    return folded.commands, folded.applied + folded.decided


def decide(
    account: Account, input: Input, policy: Policy, now: datetime
) -> tuple[Account, list[Event], list[str]]:
    """The account after ``input`` at ``now`` under ``policy``, the events to publish and
    the reasons for every decision. ``account`` itself is left as it was."""
    mine = copy.deepcopy(account)
    commands, reasons = decide_in_place(mine, input, policy, now)
    return mine, commands, reasons
