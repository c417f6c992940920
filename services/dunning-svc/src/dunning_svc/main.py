"""Dunning service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, create_app, serve

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


def app() -> FastAPI:
    """The ASGI app, for `uvicorn --factory dunning_svc.main:app`."""
    return create_app(SPEC)


def main() -> None:
    """Run the service (console script `dunning-svc`)."""
    serve(SPEC)


if __name__ == "__main__":
    main()
