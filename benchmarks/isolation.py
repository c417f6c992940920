"""What every service benchmark needs: its own settings, topics and tables, removed after
the run, and a client that serves the app in-process (httpx's ASGI transport, no
network)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from benchmarks.bus import drop_schema, drop_topics
from dunning_runtime.app import ServiceSpec
from dunning_runtime.settings import ServiceSettings

#: The tenant and keys of every bench run.
AUTH = {"Authorization": "Bearer bench-key"}
ADMIN = {"Authorization": "Bearer bench-admin-key"}


@asynccontextmanager
async def isolated(spec: ServiceSpec, data_dir: Path, **extra: Any) -> AsyncIterator[Any]:
    """``spec``'s settings for one run, on a topic prefix and schema of its own; both are
    dropped afterwards, so runs leave nothing on a shared broker or database. ``extra``
    adds or overrides settings (``clock="manual"``, ``smtp_url=...``)."""
    token = uuid.uuid4().hex[:8]
    settings: ServiceSettings = spec.settings_type(
        **{
            "service_name": spec.name,
            "data_dir": data_dir,
            "api_keys": "bench:bench-key",
            "admin_key": "bench-admin-key",
            "topic_prefix": f"bench{token}.",
            "database_schema": f"bench_{spec.name.replace('-', '_')}_{token}",
            **extra,
        }
    )
    try:
        yield settings
    finally:
        await drop_schema(settings)
        await drop_topics(settings)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` started (its lifespan: consumers, relay, jobs) and a client calling it."""
    async with (
        LifespanManager(app, startup_timeout=60, shutdown_timeout=60),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=300
        ) as client,
    ):
        yield client
