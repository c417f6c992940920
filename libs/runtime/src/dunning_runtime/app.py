"""The app factory: every service is a ``ServiceSpec`` turned into a FastAPI app.

The factory wires what every service shares, once: settings, clock, database
and migrations, the bus, the outbox relay, consumers, scheduled jobs, health
and metrics routes, problem+json errors, tracing, and the manual-clock admin
routes. A service only declares its routes, tables, subscriptions and jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel

from dunning_runtime.auth import Tenant
from dunning_runtime.bus import create_bus
from dunning_runtime.bus.port import Bus
from dunning_runtime.clock import Clock, ClockWentBackwards, ManualClock, SystemClock
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database
from dunning_runtime.outbox import Outbox, OutboxRelay
from dunning_runtime.problems import Problem, install_problem_handlers
from dunning_runtime.settings import ClockKind, ServiceSettings, load_settings
from dunning_runtime.telemetry import setup_tracing

log = logging.getLogger(__name__)

JobFn = Callable[["Runtime"], Awaitable[Any]]
#: Builds a subscription once the runtime exists (handlers need its outbox).
SubscriptionFactory = Callable[["Runtime"], Subscription]


@dataclass(frozen=True)
class ScheduledJob:
    """Work a service does as time passes (e.g. overdue detection).

    With the system clock it runs every ``interval_s``; with the manual clock
    only on ``POST /v1/admin/tick``.
    """

    name: str
    run: JobFn
    interval_s: float = 60.0


@dataclass(frozen=True)
class ServiceSpec:
    """What makes one service: its name, API, migrations, subscriptions and jobs."""

    name: str
    title: str
    description: str
    versions: Path
    produces: tuple[str, ...] = ()
    routers: Sequence[APIRouter] = ()
    subscriptions: Sequence[SubscriptionFactory] = ()
    jobs: Sequence[ScheduledJob] = ()
    version: str = "0.1.0"


@dataclass
class Runtime:
    """Everything a running service holds; on ``app.state.runtime``."""

    spec: ServiceSpec
    settings: ServiceSettings
    clock: Clock
    database: Database
    bus: Bus
    outbox: Outbox
    relay: OutboxRelay
    consumers: list[EventConsumer] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def run_jobs(self) -> None:
        """Run every scheduled job once as of the clock, then publish what they wrote."""
        for job in self.spec.jobs:
            await job.run(self)
        await self.relay.flush()


def runtime_of(request: Request) -> Runtime:
    """The ``Runtime`` of the app serving ``request``."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def create_app(spec: ServiceSpec, settings: ServiceSettings | None = None) -> FastAPI:
    """Build the FastAPI app of ``spec``; settings default to the environment."""
    settings = settings or load_settings(spec.name)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic narrates every plugin it loads at INFO; only its warnings help an operator.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    setup_tracing(spec.name, settings.otlp_endpoint)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start_runtime(spec, settings)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await stop_runtime(runtime)

    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version=spec.version,
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.include_router(_health_router())
    for router in spec.routers:
        app.include_router(router)
    if settings.clock is ClockKind.MANUAL:
        app.include_router(_admin_router())
    _instrument(app)
    return app


async def start_runtime(spec: ServiceSpec, settings: ServiceSettings) -> Runtime:
    """Open the database (migrated), the bus and start relay, consumers and jobs."""
    clock: Clock = ManualClock() if settings.clock is ClockKind.MANUAL else SystemClock()
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(spec.versions)
    bus = create_bus(settings)
    await bus.start()
    if spec.produces:
        await bus.ensure_topics(spec.produces)
    outbox = Outbox()
    relay = OutboxRelay(database, bus, outbox, service=spec.name)
    runtime = Runtime(spec, settings, clock, database, bus, outbox, relay)
    runtime.tasks.append(asyncio.create_task(relay.run(), name=f"{spec.name}-relay"))
    for factory in spec.subscriptions:
        subscription = factory(runtime)
        consumer = EventConsumer(
            bus,
            database,
            subscription,
            max_attempts=settings.consumer_max_attempts,
            batch_size=settings.consumer_batch_size,
        )
        runtime.consumers.append(consumer)
        runtime.tasks.append(asyncio.create_task(consumer.run(), name=subscription.group))
    if settings.clock is ClockKind.SYSTEM:
        for job in spec.jobs:
            runtime.tasks.append(asyncio.create_task(_every(runtime, job), name=job.name))
    return runtime


async def stop_runtime(runtime: Runtime) -> None:
    """Stop tasks, publish what is left in the outbox, close bus and database."""
    for task in runtime.tasks:
        task.cancel()
    _, stuck = await asyncio.wait(runtime.tasks, timeout=10)
    for task in stuck:
        log.error("%s: task %s did not stop within 10 s", runtime.spec.name, task.get_name())
    with contextlib.suppress(Exception):
        await asyncio.wait_for(runtime.relay.flush(), 5)
    await runtime.bus.close()
    await runtime.database.dispose()


async def _every(runtime: Runtime, job: ScheduledJob) -> None:
    while True:
        try:
            await job.run(runtime)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: scheduled job %s failed", runtime.spec.name, job.name)
        await asyncio.sleep(job.interval_s)


def _health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Database and bus are reachable (503 otherwise)")
    async def readyz(request: Request) -> JSONResponse:
        runtime = runtime_of(request)
        checks: dict[str, str] = {}
        for name, ping in (("database", runtime.database.ping), ("bus", runtime.bus.ping)):
            try:
                await asyncio.wait_for(ping(), 5)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unreachable: {type(exc).__name__}: {exc}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


class ClockBody(BaseModel):
    """Where to set the manual clock."""

    now: AwareDatetime


def _admin_router() -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin (manual clock)"])

    @router.get("/clock", summary="The service's current time")
    async def get_clock(request: Request, _tenant: Tenant) -> dict[str, datetime]:
        return {"now": runtime_of(request).clock.now()}

    @router.put("/clock", summary="Move the manual clock forward (backwards is a 409)")
    async def set_clock(body: ClockBody, request: Request, _tenant: Tenant) -> dict[str, datetime]:
        clock = runtime_of(request).clock
        assert isinstance(clock, ManualClock)
        try:
            return {"now": clock.set(body.now)}
        except ClockWentBackwards as exc:
            raise Problem(409, str(exc), type_="clock-went-backwards") from exc

    @router.post("/tick", summary="Run due scheduled work now and wait until it is published")
    async def tick(request: Request, _tenant: Tenant) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert isinstance(runtime.clock, ManualClock)
        async with runtime.clock.lock:
            await runtime.run_jobs()
        return {"now": runtime.clock.now(), "jobs": [job.name for job in runtime.spec.jobs]}

    return router


def _instrument(app: FastAPI) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    HTTPXClientInstrumentor().instrument()


def entrypoints(spec: ServiceSpec) -> tuple[Callable[[], FastAPI], Callable[[], None]]:
    """A service module's ``app`` (ASGI factory for ``uvicorn --factory``) and ``main``."""

    def app() -> FastAPI:
        return create_app(spec)

    def main() -> None:
        serve(spec)

    return app, main


def serve(spec: ServiceSpec) -> None:
    """Run ``spec`` under uvicorn on the configured host and port."""
    import uvicorn

    settings = load_settings(spec.name)
    app = create_app(spec, settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
