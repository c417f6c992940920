"""Notification service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, create_app, serve

SPEC = ServiceSpec(
    name="notify-svc",
    title="Notification service",
    description=(
        "Renders and sends reminders and notices by email, SMS, webhook and collector task."
    ),
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(topics.NOTIFICATIONS,),
)


def app() -> FastAPI:
    """The ASGI app, for `uvicorn --factory notify_svc.main:app`."""
    return create_app(SPEC)


def main() -> None:
    """Run the service (console script `notify-svc`)."""
    serve(SPEC)


if __name__ == "__main__":
    main()
