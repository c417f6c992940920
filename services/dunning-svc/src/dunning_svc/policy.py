"""Escalation policies as data: the pydantic model of a policy and the YAML shipped with
the service (``policies/<segment>.yaml``).

A policy is a ladder of steps (a pre-due reminder, then steps by days past due) and the
rules every step obeys: a contact cap, business hours in the account's time zone, a
small-balance threshold, grace for promises and plans, and whether a handoff needs a
person's approval. ``Policy.model_validate`` refuses an inconsistent ladder with an
error that names the step and the field, so ``PUT /v1/policies/{segment}`` can answer a
422 that says why.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dunning_events.common import Channel, Segment, Stage

__all__ = [
    "SHIPPED_SEGMENTS",
    "BusinessHours",
    "EscalationContact",
    "Fee",
    "LadderError",
    "Policy",
    "PublishedPolicy",
    "Step",
    "shipped_policy",
]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Action = Literal["call_task", "credit_hold", "handoff"]

#: The stage an account is in when nothing is overdue or due soon; no step may use it.
CURRENT = "current"

_PLAIN_AMOUNT = r"^[0-9]{1,12}(\.[0-9]{1,4})?$"


class LadderError(ValueError):
    """A refusal of the policy as a whole that names where in it the fault is
    (``("steps", 3, "days_past_due")``): the 422 then points at that step's field, as
    other validation errors point at theirs (``dunning_runtime.problems`` reads ``loc``)."""

    def __init__(self, message: str, *loc: str | int) -> None:
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The lookups the core asks for many times per account are cached_properties, kept
    # in the instance's __dict__ (pydantic leaves them out of fields, dumps and equality)
    # and so computed once per policy version. pydantic's model_copy copies that
    # __dict__: a copy is a new policy (another version, segment or ladder), so it drops
    # them and computes its own.
    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update`` applied, without the cached lookups of this one."""
        copied = super().model_copy(update=update, deep=deep)
        for name in _cached_names(type(self)):
            copied.__dict__.pop(name, None)
        return copied


@cache
def _cached_names(cls: type) -> tuple[str, ...]:
    """The cached_properties of ``cls`` and its bases."""
    return tuple(
        name
        for klass in cls.__mro__
        for name, value in vars(klass).items()
        if isinstance(value, cached_property)
    )


class Fee(_Strict):
    """A late fee charged at a step: the overdue invoice's ``terms.late_fee`` when it has
    one (``from_terms``), else ``amount`` in the invoice's currency."""

    from_terms: bool = Field(default=True, description="Use the invoice's own late-fee terms.")
    amount: Decimal | None = Field(
        default=None,
        description="Flat fee in the invoice's currency when the terms have none.",
        json_schema_extra={"pattern": _PLAIN_AMOUNT},
    )

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not (0 < value < Decimal(10) ** 12):
            raise ValueError("must be greater than zero and below 10^12")
        return value

    @model_validator(mode="after")
    def _some_source(self) -> Self:
        if not self.from_terms and self.amount is None:
            raise ValueError("a fee needs from_terms or an amount")
        return self


class Step(_Strict):
    """One rung of the ladder. Exactly one of ``days_before_due`` (the pre-due reminder)
    and ``days_past_due`` says when it fires, counted on the oldest chased invoice."""

    stage: Stage = Field(description="The stage the account enters, e.g. overdue_1.")
    days_before_due: int | None = Field(default=None, ge=1, le=90)
    days_past_due: int | None = Field(default=None, ge=1, le=3650)
    channels: list[Channel] = Field(default_factory=list, max_length=4)
    template: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[a-z0-9_]+$",
        description="Template for the notice; defaults to the stage name.",
    )
    fee: Fee | None = None
    actions: list[Action] = Field(default_factory=list, max_length=3)
    min_balance: Decimal | None = Field(
        default=None,
        description="The step is skipped unless the chased overdue balance in some "
        "currency reaches this (e.g. a handoff only above 500).",
        json_schema_extra={"pattern": _PLAIN_AMOUNT},
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.days_before_due is None) == (self.days_past_due is None):
            raise ValueError("give exactly one of days_before_due and days_past_due")
        if self.stage == CURRENT:
            raise ValueError("'current' is where an account is without a step; name the stage")
        if not self.channels and not self.actions:
            raise ValueError("a step needs at least one channel or action")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        if len(set(self.actions)) != len(self.actions):
            raise ValueError("actions must not repeat")
        if "call_task" in self.actions and "task" in self.channels:
            raise ValueError("call_task already opens a task; drop the task channel")
        if self.days_before_due is not None and (self.fee or self.actions):
            raise ValueError("a reminder before the due date cannot charge fees or act")
        if self.min_balance is not None and self.min_balance <= 0:
            raise ValueError("min_balance must be greater than zero")
        return self

    @property
    def notice_template(self) -> str:
        """The template name of this step's notices."""
        return self.template or self.stage

    @cached_property
    def notice_channels(self) -> tuple[Channel, ...]:
        """Channels to notify on, with the call task as a ``task`` notice."""
        extra: tuple[Channel, ...] = ("task",) if "call_task" in self.actions else ()
        return (*self.channels, *extra)


class BusinessHours(_Strict):
    """When messages may go out, in the account's own time zone."""

    start: time = Field(default=time(9), description="Opening time, e.g. 09:00.")
    end: time = Field(default=time(17), description="Closing time, e.g. 17:00.")
    days: list[Weekday] = Field(
        default_factory=lambda: list(WEEKDAYS[:5]), min_length=1, max_length=7
    )

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: time) -> time:
        # Business hours are local to each account's time zone: an offset makes no sense.
        if value.tzinfo is not None:
            raise ValueError("give a local time such as 09:00, without an offset")
        return value

    @model_validator(mode="after")
    def _open_some_time(self) -> Self:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        if len(set(self.days)) != len(self.days):
            raise ValueError("days must not repeat")
        return self

    @cached_property
    def weekdays(self) -> frozenset[int]:
        """The open days as ``date.weekday()`` numbers (Monday 0)."""
        return frozenset(WEEKDAYS.index(d) for d in self.days)


class EscalationContact(_Strict):
    """From which stage the account's escalation contact hears about it, and how."""

    from_stage: Stage = Field(default="overdue_3")
    mode: Literal["cc", "to"] = Field(
        default="cc", description="cc: a copy; to: the notice is addressed to them."
    )


class Policy(_Strict):
    """An escalation policy for one segment."""

    segment: Segment
    version: int = Field(
        default=0, ge=0, description="Set by the service: 0 is the shipped policy, then 1, 2, ..."
    )
    description: str = Field(default="", max_length=1000)
    steps: list[Step] = Field(min_length=1, max_length=30)
    contact_cap_days: int = Field(
        default=3, ge=0, le=60, description="At most one contact moment per rolling N days."
    )
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    small_balance: Decimal = Field(
        default=Decimal("0"),
        ge=0,
        description="Overdue balances below this (in any currency) are not chased.",
        json_schema_extra={"pattern": _PLAIN_AMOUNT},
    )
    promise_grace_days: int = Field(default=2, ge=0, le=60)
    installment_grace_days: int = Field(default=3, ge=0, le=60)
    max_promise_days: int = Field(
        default=60, ge=1, le=365, description="A promised date at most this far ahead."
    )
    handoff_requires_approval: bool = Field(
        default=False, description="A handoff waits for a person's approval (strategic)."
    )
    escalation_contact: EscalationContact = Field(default_factory=EscalationContact)
    thank_you: bool = Field(default=True, description="Thank the customer when paid up.")

    @model_validator(mode="after")
    def _a_ladder(self) -> Self:
        seen: set[str] = set()
        for index, step in enumerate(self.steps):
            if step.stage in seen:
                raise LadderError("every step needs its own stage", "steps", index, "stage")
            seen.add(step.stage)
            if step.days_before_due is not None and index != 0:
                raise LadderError(
                    "at most one reminder before the due date, as the first step",
                    *("steps", index, "days_before_due"),
                )
        by_days = [(i, d) for i, s in enumerate(self.steps) if (d := s.days_past_due) is not None]
        if not by_days:
            raise LadderError("a policy needs at least one step by days_past_due", "steps")
        for (_, before), (index, days) in itertools.pairwise(by_days):
            if days <= before:
                raise LadderError(
                    f"days_past_due must increase from step to step ({days} after {before})",
                    *("steps", index, "days_past_due"),
                )
        for index, step in enumerate(self.steps[:-1]):
            if "handoff" in step.actions:
                raise LadderError("a handoff can only be the last step", "steps", index, "actions")
        if self.escalation_contact.from_stage not in seen:
            raise LadderError(
                f"escalation_contact.from_stage {self.escalation_contact.from_stage!r} "
                "is not a stage of this policy",
                *("escalation_contact", "from_stage"),
            )
        return self

    @property
    def reminder(self) -> Step | None:
        """The pre-due reminder step, if the policy has one."""
        first = self.steps[0]
        return first if first.days_before_due is not None else None

    # Computed once per policy (see _Strict): the core asks for the ladder and for ranks
    # many times per account, and a private attribute is read through pydantic's
    # __getattr__, which cost a tenth of the timer sweep.
    @cached_property
    def ladder(self) -> tuple[Step, ...]:
        """The steps by days past due, in order."""
        return tuple(s for s in self.steps if s.days_past_due is not None)

    @cached_property
    def memo(self) -> dict[object, Any]:
        """What the core derives from this policy and keeps for its next decisions (the
        answer per step of ``notices.next_step``): one dict per policy object."""
        return {}

    @cached_property
    def ladder_days(self) -> tuple[int, ...]:
        """The ladder's days past due, step by step (increasing)."""
        return tuple(s.days_past_due or 0 for s in self.ladder)

    @cached_property
    def ranks(self) -> dict[str, int]:
        """Stage -> position (see ``rank``)."""
        ranks = {step.stage: index for index, step in enumerate(self.steps)}
        ranks[CURRENT] = -1
        return ranks

    def rank(self, stage: str) -> int:
        """Position of ``stage`` in the ladder: ``current`` is -1, a stage this policy
        does not know (left from another version) ranks after the last step."""
        return self.ranks.get(stage, len(self.steps))

    @cached_property
    def stages(self) -> tuple[str, ...]:
        """Every step's stage in order: ``stages[: rank(s) + 1]`` are the stages up to
        ``s`` (a stage's rank is its step's position)."""
        return tuple(step.stage for step in self.steps)

    @cached_property
    def ladder_ranks(self) -> tuple[tuple[str, int], ...]:
        """The ladder's stages with their ranks, in order."""
        return tuple((step.stage, self.rank(step.stage)) for step in self.ladder)

    @cached_property
    def following(self) -> dict[str, Step]:
        """Stage -> the ladder's first step ranked after it (none after the last)."""
        found: dict[str, Step] = {}
        for stage in (CURRENT, *self.stages):
            later = [s for s in self.ladder if self.rank(s.stage) > self.rank(stage)]
            if later:
                found[stage] = later[0]
        return found


#: The segments with a policy shipped in ``policies/``.
SHIPPED_SEGMENTS = ("standard", "strategic", "high_risk")
_SHIPPED = Path(__file__).parent / "policies"


def load_yaml(text: str) -> Policy:
    """A policy from YAML text; ``pydantic.ValidationError`` or ``ValueError`` if invalid."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("a policy is a YAML mapping")
    return Policy.model_validate(data)


@cache
def shipped_policy(segment: str) -> Policy:
    """The policy shipped for ``segment``; segments without one get ``standard``'s
    ladder under their own name."""
    name = segment if segment in SHIPPED_SEGMENTS else "standard"
    policy = load_yaml((_SHIPPED / f"{name}.yaml").read_text())
    return policy if name == segment else policy.model_copy(update={"segment": segment})


def load_policy_json(body: str, *, version: int) -> Policy:
    """A stored policy version (JSON text, as validated when it was published)."""
    return Policy.model_validate_json(body).model_copy(update={"version": version})


@dataclass(frozen=True)
class PublishedPolicy:
    """One version of a segment's policy as published: by whom, when, and whether it
    applies to accounts already in dunning. The shipped policy is version 0, published
    by ``shipped`` at no instant."""

    segment: str
    policy: Policy
    apply_to_running: bool = False
    created_by: str = "shipped"
    created_at: datetime | None = None

    @property
    def version(self) -> int:
        """The policy's version number."""
        return self.policy.version
