"""The rule errors of manual actions: what the core refuses, and why."""

from __future__ import annotations


class DunningRuleError(ValueError):
    """A manual action the rules refuse (422), naming the field when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DunningConflict(DunningRuleError):
    """A manual action that conflicts with the account's state (409)."""
