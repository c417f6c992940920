"""Rule errors: what a service's rules refuse, in domain terms.

A service's own errors subclass these (``InvoiceNotFound(InvoiceRuleError, NotFound)``)
and keep their names and ``code``s. Nothing here knows HTTP: one mapping,
``dunning_runtime.problems.problem_of``, turns them into problems at the edge, so a
domain module can raise them without importing the web framework.
"""

from __future__ import annotations


class RuleError(ValueError):
    """A request the rules refuse; ``field`` names the culprit when there is one.

    ``code`` is the problem type slug (``https://dunning.dev/problems/<code>``) of a
    ``NotFound`` or ``Conflict``; a plain rule error is a 422 that names
    ``<location>.<field>`` (``body.amount``, ``path.key``), or ``<location>`` without a field.
    """

    code = "validation-error"

    def __init__(self, message: str, field: str | None = None, *, location: str = "body") -> None:
        super().__init__(message)
        self.field = field
        self.location = location

    @property
    def path(self) -> str:
        """Where the culprit is in the request: ``body.allocations[0]``, ``path.key``, ``body``."""
        return f"{self.location}.{self.field}" if self.field else self.location


class NotFound(RuleError):
    """The resource does not exist for this tenant (another tenant's counts as none)."""

    code = "not-found"


class Conflict(RuleError):
    """The resource's state does not allow the change now."""

    code = "conflict"
