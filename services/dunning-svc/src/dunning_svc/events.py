"""dunning-svc's events at the shell: whose they are, and how one is named.

The events themselves (``DunningStageChanged``, the notice and handoff commands) are
built by the pure core as part of its decisions (``domain``); the shell stamps them
into envelopes under ``Scope.of(SERVICE, ...)`` (their source is ``/dunning-svc``), and
names them in the timeline and in the decision spans with ``summary``.
"""

from __future__ import annotations

from dunning_events import Event
from dunning_svc.core import Input

#: The service that publishes these events (``ServiceSpec.name``; their source is
#: ``/dunning-svc``).
SERVICE = "dunning-svc"


def input_name(value: Input) -> str:
    """What an input is called in a decision span: an event's type, else the action's."""
    if isinstance(value, Event):
        return value.event_type
    return type(value).__name__


def summary(event: Event) -> str:
    """An emitted event in one line: its type, then its stage and channel if it has them."""
    # Through __dict__: getattr with a default on a pydantic model that lacks the field
    # goes through its __getattr__ and an AttributeError, which cost more than the rest.
    fields = event.__dict__
    channel = fields.get("channel")
    stage = fields.get("stage") or fields.get("to_stage")
    parts = [event.event_type, *(p for p in (stage, channel) if p)]
    return " ".join(parts)
