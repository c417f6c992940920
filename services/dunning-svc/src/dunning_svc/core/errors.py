"""The rule errors of manual actions: what the core refuses, and why.

They are the runtime's shared rule errors (``dunning_runtime.rules``, which knows no
HTTP), so the shared ``problem_of`` answers them: a ``DunningRuleError`` is a 422 naming
``body.<field>``, a ``DunningConflict`` a 409 typed ``dunning-conflict``.
"""

from __future__ import annotations

from dunning_runtime.rules import Conflict, RuleError


class DunningRuleError(RuleError):
    """A manual action the rules refuse (422), naming the field when there is one."""


class DunningConflict(DunningRuleError, Conflict):
    """A manual action that conflicts with the account's state (409)."""

    code = "dunning-conflict"
