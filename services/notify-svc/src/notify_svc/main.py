"""Notification service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, entrypoints
from notify_svc import api, consumers, jobs, workers
from notify_svc.settings import NotifySettings

SPEC = ServiceSpec(
    name="notify-svc",
    port_offset=3,  # DUNNING_BASE_PORT + 3: its place in `dunning up` (dunning_cli.platform)
    title="Notification service",
    description=(
        "Renders each NotificationRequested for its channel and locale and sends it exactly "
        "once: email over SMTP, SMS and webhooks over HTTP, call tasks for collectors. "
        "Every /v1 route needs `Authorization: Bearer <key>`; errors are RFC 9457 "
        "problem+json naming the field; every POST is idempotent."
    ),
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(topics.NOTIFICATIONS,),
    routers=(api.router,),
    subscriptions=(consumers.commands,),
    jobs=(jobs.DELIVER,),
    workers=(workers.DELIVERY,),
    # Six template parts of up to 20,000 characters each, JSON-escaped (up to 12 bytes a
    # character): the body limit must let every body the schema allows reach validation.
    body_limits={"/v1/templates/{key}": 2 * 1024 * 1024},
    settings_type=NotifySettings,
)


#: ``app`` for ``uvicorn --factory notify_svc.main:app``; ``main`` is the console script.
app, main = entrypoints(SPEC)

if __name__ == "__main__":
    main()
