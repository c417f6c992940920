"""Dunning service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, entrypoints
from dunning_svc import api, consumers, events, gauges, jobs
from dunning_svc.settings import DunningSettings

SPEC = ServiceSpec(
    name=events.SERVICE,
    port_offset=2,  # DUNNING_BASE_PORT + 2: its place in `dunning up` (dunning_cli.platform)
    title="Dunning service",
    description=(
        "The per-account escalation engine: account state and worklist, timelines, "
        "promises to pay, payment plans, pauses, handoff approval, write-offs, contacts, "
        "escalation policies as versioned data, aging and DSO. Every /v1 route needs "
        "`Authorization: Bearer <key>`; errors are RFC 9457 problem+json naming the "
        "field; every POST is idempotent under an Idempotency-Key."
    ),
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(topics.DUNNING_COMMANDS, topics.DUNNING_EVENTS),
    routers=(api.router,),
    subscriptions=(consumers.events,),
    jobs=(jobs.TIMERS,),
    gauges=gauges.GAUGES,
    settings_type=DunningSettings,
)


#: ``app`` for ``uvicorn --factory dunning_svc.main:app``; ``main`` is the console script.
app, main = entrypoints(SPEC)

if __name__ == "__main__":
    main()
