"""Test harness shared by every test (loaded by the root conftest.py).

Backends follow the same settings as the services: with ``DUNNING_BUS_URL``
and ``DUNNING_DATABASE_URL`` unset the tests run on the embedded log and SQLite
in a temporary directory; pointed at Kafka and PostgreSQL they run there, each
test in its own topic prefix and schema so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI
from sqlalchemy import text

from dunning_runtime.app import Runtime, ServiceSpec
from dunning_runtime.db import Database
from dunning_runtime.settings import ServiceSettings
from dunning_runtime.tls import kafka_client_options

#: The admin key of every test service (DUNNING_ADMIN_KEY): the manual clock and tick need it.
ADMIN_KEY = "admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def settings_type_of(service: str) -> type[ServiceSettings]:
    """The settings class of a platform service by name; the shared one for test services."""
    from dunning_svc.main import SPEC as DUNNING
    from invoice_svc.main import SPEC as INVOICE
    from notify_svc.main import SPEC as NOTIFY
    from payment_svc.main import SPEC as PAYMENT

    types = {spec.name: spec.settings_type for spec in (INVOICE, PAYMENT, DUNNING, NOTIFY)}
    return types.get(service, ServiceSettings)


BUS_URL = os.environ.get("DUNNING_BUS_URL", "")
DATABASE_URL = os.environ.get("DUNNING_DATABASE_URL", "")


def backend_name() -> str:
    """'kafka+postgresql' or 'embedded+sqlite' (or a mix), for test ids and reports."""
    bus = "kafka" if BUS_URL.startswith("kafka") else "embedded"
    db = "postgresql" if DATABASE_URL.startswith("postgresql") else "sqlite"
    return f"{bus}+{db}"


def pytest_report_header() -> str:
    return f"dunning backend: {backend_name()}"


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Fail the test that leaves a non-daemon thread running (an aiosqlite connection
    nobody closed, say): it would keep a stopped service's process from exiting."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        left = [t for t in threading.enumerate() if t not in before and not t.daemon]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if left:
        names = ", ".join(f"{t.name} ({type(t).__name__})" for t in left)
        pytest.fail(f"the test left {len(left)} non-daemon thread(s) running: {names}")


@pytest.fixture
def unique() -> str:
    """A short unique token for topic prefixes, schemas and groups."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def settings_factory(tmp_path: Path, unique: str) -> AsyncIterator[object]:
    """Build settings (the service's own type) on the active backends, isolated per test."""
    schemas: list[str] = []

    def make(service: str = "test-svc", **overrides: object) -> ServiceSettings:
        values: dict[str, object] = {
            "data_dir": tmp_path,
            "bus_url": BUS_URL or f"embedded:{tmp_path / 'bus.sqlite'}",
            "topic_prefix": f"{unique}.",
            "api_keys": "acme:acme-key,globex:globex-key",
            "admin_key": ADMIN_KEY,
            "database_url": DATABASE_URL,
        }
        if DATABASE_URL:
            schema = f"{unique}_{service.replace('-', '_')}"
            values["database_schema"] = schema
            schemas.append(schema)
        values.update(overrides)
        settings_type = settings_type_of(service)
        return settings_type(service_name=service, **values)  # type: ignore[arg-type]

    yield make
    if DATABASE_URL and schemas:
        # The services' own TLS settings (DUNNING_DATABASE_SSL_*) apply to the clean-up too.
        database = Database.from_settings(ServiceSettings(database_url=DATABASE_URL))
        async with database.engine.begin() as conn:
            for schema in schemas:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await database.dispose()
    if BUS_URL.startswith("kafka"):
        await _delete_topics(BUS_URL, f"{unique}.")


async def _delete_topics(bus_url: str, prefix: str) -> None:
    """Delete the test's topics: a broker keeping every test's 8-partition topics
    (~17,000 partitions after a few runs) ran out of its 512 MB heap."""
    from urllib.parse import urlsplit

    from aiokafka.admin import AIOKafkaAdminClient

    bootstrap = urlsplit(bus_url).netloc
    options = kafka_client_options(ServiceSettings(bus_url=bus_url))  # DUNNING_KAFKA_* too
    admin = AIOKafkaAdminClient(**options, bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    except Exception as exc:  # a cleanup failure must not fail the test
        print(f"could not delete topics {prefix}*: {exc}", file=sys.stderr)
    finally:
        await admin.close()


def ledger_spec(*routers: APIRouter, **changes: Any) -> ServiceSpec:
    """A small service for shell tests: it consumes ``invoices`` into the ledger table."""
    from dunning_events import topics
    from dunning_runtime.consumer import Subscription
    from tests.support import ledger

    def subscription(_runtime: Runtime) -> Subscription:
        return Subscription(group="ledger", topics=(topics.INVOICES,), handler=ledger.apply_event)

    values: dict[str, Any] = {
        "name": "ledger-svc",
        "title": "Ledger",
        "description": "Applies invoice events to a table (tests only).",
        "versions": ledger.VERSIONS,
        "produces": (topics.INVOICES,),
        "routers": routers,
        "subscriptions": (subscription,),
    }
    values.update(changes)
    return ServiceSpec(**values)


async def until(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float = 60, what: str = "condition"
) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` after a generous ``timeout_s``."""
    if not await within(condition, timeout_s=timeout_s):
        pytest.fail(f"{what} did not happen within {timeout_s} s")


async def within(condition: Callable[[], Awaitable[bool]], *, timeout_s: float) -> bool:
    """Whether ``condition()`` holds within ``timeout_s`` (polled; never fails the test)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An app with its lifespan, and a client speaking to it in-process."""
    async with (
        LifespanManager(app, startup_timeout=60, shutdown_timeout=60),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client,
    ):
        yield client


# A test that fails before closing a SQLite connection leaves aiosqlite's worker
# thread behind; it is not a daemon, so the interpreter would wait for it forever
# and CI would hang after the summary. Name the leak, then exit with pytest's status.
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaked = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if leaked:
        names = ", ".join(sorted({t.name for t in leaked}))
        print(f"\n{len(leaked)} thread(s) left running after the tests: {names}", file=sys.stderr)
        session.config.stash[_EXIT_STATUS] = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    status = config.stash.get(_EXIT_STATUS, None)
    if status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


_EXIT_STATUS = pytest.StashKey[int]()
