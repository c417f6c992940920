"""Dunning service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, entrypoints

SPEC = ServiceSpec(
    name="dunning-svc",
    title="Dunning service",
    description=(
        "Accounts, escalation policies, promises to pay, payment plans, timelines and reports."
    ),
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(
        topics.DUNNING_COMMANDS,
        topics.DUNNING_EVENTS,
    ),
)


#: ``app`` for ``uvicorn --factory dunning_svc.main:app``; ``main`` is the console script.
app, main = entrypoints(SPEC)

if __name__ == "__main__":
    main()
