"""What became of one posted resource, in domain terms: created, replayed, conflict, invalid.

A resource posted under its own id (an invoice, a payment) is accepted once; posted
again it is a replay when the content is the same, and a conflict naming the fields
that differ otherwise. Use cases return an ``ItemResult`` per item and never an HTTP
status; the route maps it (``dunning_runtime.batches``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from dunning_runtime.idempotency import changed_fields

T = TypeVar("T")


class Outcome(StrEnum):
    """The four ways one posted item ends."""

    CREATED = "created"
    #: The same id again: the first result (with the same content, or any content where
    #: the caller replays whatever comes, like a processor's webhook notice).
    REPLAYED = "replayed"
    #: The same id with other content: ``differences`` names the fields.
    CONFLICT = "conflict"
    #: Refused by the rules or by the event's own checks: ``error`` says why; nothing stored.
    INVALID = "invalid"


@dataclass(frozen=True)
class ItemResult(Generic[T]):
    """The outcome of one item and its resource as it stands (``value``, when accepted)."""

    outcome: Outcome
    value: T | None = None
    #: Fields that differ from the accepted request (a conflict, or a replay of any content).
    differences: tuple[str, ...] = ()
    #: Why an ``INVALID`` item was refused: a ``RuleError`` or the ``ValueError`` (a pydantic
    #: ``ValidationError`` too) of a check the input validation missed.
    error: ValueError | None = None

    @property
    def accepted(self) -> bool:
        """Created or replayed: the resource exists as ``value``."""
        return self.outcome in (Outcome.CREATED, Outcome.REPLAYED)


def created(value: T) -> ItemResult[T]:
    """A new resource, accepted now."""
    return ItemResult(Outcome.CREATED, value)


def invalid(error: ValueError) -> ItemResult[Any]:
    """An item refused by ``error``; nothing of it is stored."""
    return ItemResult(Outcome.INVALID, error=error)


def replay_or_conflict(
    accepted_request: object,
    request: object,
    value: T,
    *,
    any_content_replays: bool = False,
) -> ItemResult[T]:
    """An id posted again: a replay of ``value`` when ``request`` (a JSON-like body) is
    ``accepted_request`` again, else a conflict naming the fields that differ. With
    ``any_content_replays`` every repeat is a replay that lists the differences."""
    fields = tuple(changed_fields(accepted_request, request))
    if fields and not any_content_replays:
        return ItemResult(Outcome.CONFLICT, differences=fields)
    return ItemResult(Outcome.REPLAYED, value, differences=fields)
