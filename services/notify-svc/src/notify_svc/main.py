"""Notification service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, entrypoints
from notify_svc.settings import NotifySettings

SPEC = ServiceSpec(
    name="notify-svc",
    title="Notification service",
    description=(
        "Renders and sends reminders and notices by email, SMS, webhook and collector task."
    ),
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(topics.NOTIFICATIONS,),
    settings_type=NotifySettings,
)


#: ``app`` for ``uvicorn --factory notify_svc.main:app``; ``main`` is the console script.
app, main = entrypoints(SPEC)

if __name__ == "__main__":
    main()
