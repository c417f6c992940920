"""A service's console script: ``<service>`` serves it under uvicorn; ``<service> migrate``
brings its tables to the newest revision and exits (the Kubernetes migration Job's
command, so that replicas started with ``DUNNING_MIGRATE=false`` never race on it)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dunning_runtime.db import Database
from dunning_runtime.logs import setup_logging
from dunning_runtime.settings import load_settings

if TYPE_CHECKING:
    from dunning_runtime.app import ServiceSpec


def run(spec: ServiceSpec, argv: Sequence[str] | None = None) -> None:
    """``migrate`` as the first argument: migrate and exit; anything else: serve."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["migrate"]:
        asyncio.run(migrate(spec))
    else:
        serve(spec)


async def migrate(spec: ServiceSpec) -> None:
    """Upgrade the service's tables (whatever ``DUNNING_MIGRATE`` says) and close."""
    settings = load_settings(spec)
    setup_logging(spec.name, settings.log_level, settings.log_format)
    database = Database.from_settings(settings)
    try:
        await database.migrate(spec.versions)
    finally:
        await database.dispose()


def serve(spec: ServiceSpec) -> None:
    """Run ``spec`` under uvicorn on the configured host and port."""
    import uvicorn

    from dunning_runtime.app import create_app

    settings = load_settings(spec)
    app = create_app(spec, settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # No config of uvicorn's own: its loggers propagate to ours (logs.setup_logging).
        log_config=None,
        access_log=settings.access_log,
        # Our own stop takes a few seconds at most; in-flight requests get this long.
        timeout_graceful_shutdown=10,
    )
