"""The app factory: every service is a ``ServiceSpec`` turned into a FastAPI app.

The factory wires what every service shares, once: settings, clock, database
and migrations, the bus, the outbox relay, consumers, scheduled jobs, health
and metrics routes, problem+json errors, tracing, and the manual-clock admin
routes. A service only declares its routes, tables, subscriptions, jobs and
workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, overload

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, field_validator
from typing_extensions import TypeVar

from dunning_events import topics
from dunning_runtime import api_keys, clock_store, heap, housekeeping, logs
from dunning_runtime.api_keys import KeyRing
from dunning_runtime.auth import Admin
from dunning_runtime.bus import create_bus
from dunning_runtime.bus.port import Bus
from dunning_runtime.clock import (
    CLOCK_MAX,
    CLOCK_MIN,
    Clock,
    ClockOutOfRange,
    ClockWentBackwards,
    ManualClock,
    SystemClock,
)
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database
from dunning_runtime.http_guards import RequestGuards
from dunning_runtime.idempotency import IdempotencyMiddleware
from dunning_runtime.liveness import Liveness
from dunning_runtime.metrics import EVENTS_PUBLISHED, RequestTimer, RuntimeGauges, ScrapeRefresh
from dunning_runtime.openapi import install_openapi
from dunning_runtime.outbox import Outbox, OutboxRelay
from dunning_runtime.problems import Problem, install_problem_handlers
from dunning_runtime.scope import Scope
from dunning_runtime.settings import ClockKind, ServiceSettings, load_settings
from dunning_runtime.supervision import Supervisor
from dunning_runtime.telemetry import scrub_url_attributes, setup_tracing

log = logging.getLogger(__name__)

#: The settings class of a service's runtime (``ServiceSettings`` when not said).
SettingsT = TypeVar("SettingsT", bound=ServiceSettings, default=ServiceSettings)
S = TypeVar("S", bound=ServiceSettings)
W = TypeVar("W")

# ``Runtime[Any]``: a service's job, subscription or worker may take the runtime of its
# own settings class (``Runtime[NotifySettings]``).
JobFn = Callable[["Runtime[Any]"], Awaitable[Any]]
#: Builds a subscription once the runtime exists (handlers need its outbox).
SubscriptionFactory = Callable[["Runtime[Any]"], Subscription]


class Worker(Protocol):
    """A long-running task of a service (notify-svc's delivery), run under supervision.

    ``run`` works until cancelled; if it raises, the supervisor logs it and calls
    ``run`` again after a backoff. A worker may offer more (say ``wake()``, for a
    consumer to call when it recorded new work): the service's code finds it with
    ``runtime.worker(TheClass)``.
    """

    async def run(self) -> None:
        """Work until cancelled."""
        ...


@dataclass(frozen=True)
class WorkerSpec:
    """A service's long-running worker: its task name and how to make it.

    ``make`` is called once at start, after the runtime exists and before the
    subscriptions are built (so their handlers can look the worker up); ``run`` starts
    under the runtime's supervisor after the consumers, and stops with them.
    """

    name: str
    make: Callable[[Runtime[Any]], Worker]


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
class ScrapedGauges:
    """Gauges a service computes from its state when ``/metrics`` is scraped (e.g.
    dunning-svc's accounts by stage), at most once per ``min_interval_s``."""

    name: str
    refresh: JobFn
    min_interval_s: float = 5.0


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
    #: Long-running workers, supervised like the consumers (``WorkerSpec``).
    workers: Sequence[WorkerSpec] = ()
    version: str = "0.1.0"
    #: The service's place in the platform: with ``DUNNING_PORT`` 0 it listens on
    #: ``DUNNING_BASE_PORT`` + this (None: the port must be given). The platform's list
    #: (``dunning_cli.platform.SERVICES``) starts each service at its index, the same.
    port_offset: int | None = None
    #: The service's settings class: ``ServiceSettings`` or a subclass with its own fields.
    settings_type: type[ServiceSettings] = ServiceSettings
    #: Largest request body per route path (templates like ``/v1/x/{id}`` allowed);
    #: every other route accepts ``DEFAULT_BODY_LIMIT`` bytes.
    body_limits: Mapping[str, int] = field(default_factory=dict)
    #: Path prefixes under /v1 whose requests authenticate themselves (a signed webhook
    #: from a processor that cannot send a Bearer key): the key check lets them through
    #: and the route must verify them.
    signed_prefixes: tuple[str, ...] = ()
    #: The service's own gauges, refreshed on scrape besides the runtime's (lag, backlog).
    gauges: Sequence[ScrapedGauges] = ()


@dataclass
class Runtime(Generic[SettingsT]):
    """Everything a running service holds; on ``app.state.runtime``.

    Generic over the service's settings class (``ServiceSpec.settings_type``), so a
    service reads its own fields from ``runtime.settings`` without a check of its own.
    """

    spec: ServiceSpec
    settings: SettingsT
    clock: Clock
    database: Database
    bus: Bus
    outbox: Outbox
    relay: OutboxRelay
    supervisor: Supervisor
    #: This process's lock: claims (relay lease, Idempotency-Keys) name it as their owner.
    liveness: Liveness
    #: The API keys this process accepts, reloaded from the service's table every second.
    keys: KeyRing
    consumers: list[EventConsumer] = field(default_factory=list)
    #: What ``/metrics`` refreshes before it answers (runtime gauges, then the service's).
    scrape: list[ScrapeRefresh] = field(default_factory=list)
    #: The service's workers by task name (``ServiceSpec.workers``), made at start.
    workers: dict[str, Worker] = field(default_factory=dict)

    def worker(self, kind: type[W]) -> W:
        """The service's worker of class ``kind``; ``LookupError`` if it has none."""
        for worker in self.workers.values():
            if isinstance(worker, kind):
                return worker
        raise LookupError(f"{self.spec.name} has no worker of type {kind.__name__}")

    def scope(self, tenant: str, now: datetime | None = None) -> Scope:
        """The scope of this service's commands for ``tenant`` at ``now`` (the clock's
        instant when not given): its events come from ``/<service name>``."""
        return Scope.of(self.spec.name, tenant, now or self.clock.now(), self.outbox)

    @property
    def jobs(self) -> tuple[ScheduledJob, ...]:
        """The service's scheduled jobs, then the built-in housekeeping every service runs."""
        housekeeping_job = ScheduledJob(
            f"{self.spec.name}-housekeeping", _housekeep, interval_s=housekeeping.INTERVAL_S
        )
        return (*self.spec.jobs, housekeeping_job)

    async def run_jobs(self) -> None:
        """Run every scheduled job once as of the clock, then publish what they wrote."""
        for job in self.jobs:
            await job.run(self)
        await self.relay.flush()


async def _housekeep(runtime: Runtime) -> None:
    await housekeeping.housekeep(runtime)


@overload
def runtime_of(request: Request) -> Runtime: ...


@overload
def runtime_of(request: Request, settings_type: type[S]) -> Runtime[S]: ...


def runtime_of(
    request: Request, settings_type: type[ServiceSettings] | None = None
) -> Runtime[Any]:
    """The ``Runtime`` of the app serving ``request``; with ``settings_type`` (the
    service's ``ServiceSpec.settings_type``), typed by it.

    A ``TypeError`` says the app runs another settings class: a wiring mistake, caught
    here once instead of by an ``isinstance`` in every service.
    """
    runtime: Runtime[Any] = request.app.state.runtime
    if settings_type is not None and not isinstance(runtime.settings, settings_type):
        running = type(runtime.settings).__name__
        raise TypeError(f"{runtime.spec.name} runs {running}, not {settings_type.__name__}")
    return runtime


def create_app(spec: ServiceSpec, settings: ServiceSettings | None = None) -> FastAPI:
    """Build the FastAPI app of ``spec``; settings default to the environment.

    ``settings`` of the shared type are widened to ``spec.settings_type`` (its own
    fields then come from the environment or their defaults).
    """
    settings = service_settings(spec, settings)
    logs.setup_logging(spec.name, settings.log_level, settings.log_format)
    setup_tracing(spec.name, settings.otlp_endpoint)

    # Made before the app starts: the request guards check keys with it.
    keys = KeyRing(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start_runtime(spec, settings, keys)
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
    app.state.keys = keys
    install_problem_handlers(app)
    # Every POST of every service replays under its Idempotency-Key (added first, so
    # it runs inside the body-size limit).
    app.add_middleware(IdempotencyMiddleware)
    # A true OpenAPI document, and 405s whose Allow lists every method of the path.
    install_openapi(app, spec.body_limits)
    # Outermost of the app's own middleware: nothing reads a body before the key and size checks.
    app.add_middleware(
        RequestGuards,
        settings=settings,
        keys=keys,
        body_limits=spec.body_limits,
        service=spec.name,
        signed_prefixes=spec.signed_prefixes,
    )
    # Outermost: a request the guards refuse is timed too.
    app.add_middleware(RequestTimer, service=spec.name)
    app.include_router(_health_router())
    for router in spec.routers:
        app.include_router(router)
    app.include_router(api_keys.key_routes())
    if settings.clock is ClockKind.MANUAL:
        app.include_router(_admin_router())
    _instrument(app)
    return app


def service_settings(spec: ServiceSpec, settings: ServiceSettings | None) -> ServiceSettings:
    """``settings`` as ``spec.settings_type`` (read from the environment when None)."""
    if settings is None:
        return load_settings(spec)
    if isinstance(settings, spec.settings_type):
        return settings
    # Shared values as given; the service's own fields from the environment or defaults.
    values = {name: getattr(settings, name) for name in type(settings).model_fields}
    return spec.settings_type(**values)


#: Bounds of each step of a stop: cancelled tasks, the last outbox flush, closing the bus
#: and the database. A step that overruns is logged and left behind, so a stop always
#: ends within their sum even with the database or broker hanging.
STOP_TASKS_TIMEOUT_S = 1.5
FINAL_FLUSH_TIMEOUT_S = 0.5
CLOSE_TIMEOUT_S = 1.0


async def start_runtime(
    spec: ServiceSpec, settings: ServiceSettings, keys: KeyRing | None = None
) -> Runtime:
    """Open the database (migrated), the bus and start relay, consumers and jobs.

    ``keys`` (a new ring when None) is loaded from the service's key table before this
    returns, and then every second.

    If start-up fails half-way, what was opened is closed again before the error
    propagates, so a failed start leaks no thread or connection either.
    """
    # The tasks started below inherit it: their log lines name this service.
    logs.SERVICE.set(spec.name)
    clock: Clock = ManualClock() if settings.clock is ClockKind.MANUAL else SystemClock()
    database = Database.from_settings(settings)
    bus = create_bus(settings)
    liveness = Liveness(database, spec.name)
    keys = keys or KeyRing(settings)
    try:
        await database.migrate(spec.versions, apply=settings.migrate)
        await api_keys.refresh(keys, database)
        if isinstance(clock, ManualClock) and (stored := await clock_store.load(database)):
            clock.set(stored)  # a restart goes on at the simulated time
        await liveness.start()
        await bus.start()
        # Every service publishes and consumes the managed keys.
        await bus.ensure_topics(tuple(dict.fromkeys((*spec.produces, topics.API_KEYS))))
    except BaseException:
        await _close(spec.name, bus, database, liveness)
        raise
    outbox = Outbox()
    relay = OutboxRelay(
        database,
        bus,
        outbox,
        service=spec.name,
        retry_max_s=settings.consumer_retry_max_s,
        liveness=liveness,
    )
    for topic in spec.produces:  # at 0 from the start, as the consumers' series are
        EVENTS_PUBLISHED.labels(spec.name, topic)
    supervisor = Supervisor(spec.name)
    runtime = Runtime(
        spec, settings, clock, database, bus, outbox, relay, supervisor, liveness, keys
    )
    supervisor.start(f"{spec.name}-liveness", liveness.keep)
    supervisor.start(f"{spec.name}-relay", relay.run)
    supervisor.start(f"{spec.name}-key-refresh", lambda: api_keys.keep_fresh(keys, database))
    # Made before the subscriptions: their handlers may wake a worker.
    runtime.workers = {worker.name: worker.make(runtime) for worker in spec.workers}
    subscriptions = [factory(runtime) for factory in spec.subscriptions]
    for subscription in [*subscriptions, api_keys.subscription(spec.name)]:
        consumer = EventConsumer(
            bus,
            database,
            subscription,
            max_attempts=settings.consumer_max_attempts,
            batch_size=settings.consumer_batch_size,
            concurrency=settings.consumer_concurrency,
            retry_max_s=settings.consumer_retry_max_s,
            service=spec.name,
        )
        runtime.consumers.append(consumer)
        supervisor.start(subscription.group, consumer.run)
    for name, worker in runtime.workers.items():
        supervisor.start(name, worker.run)
    runtime.scrape = _scrape_refreshes(runtime)
    if settings.clock is ClockKind.SYSTEM:
        for job in runtime.jobs:
            supervisor.start(job.name, _job_loop(runtime, job))
    # What is alive now lives as long as the process: keep the collector off it.
    heap.settle()
    return runtime


async def stop_runtime(runtime: Runtime) -> None:
    """Stop within a few seconds whatever the tasks are doing, then close bus and database.

    Order matters: the tasks go first (each stops its own bus consumer as it
    unwinds), then one bounded flush publishes what the outbox still holds (rows
    left over stay for the next start), then the bus, and the database last,
    because consumers and relay use it until they are gone.
    """
    name = runtime.spec.name
    for refresh in runtime.scrape:
        await refresh.close()
    await runtime.supervisor.stop(STOP_TASKS_TIMEOUT_S)
    await _bounded(name, "the last outbox flush", runtime.relay.flush(), FINAL_FLUSH_TIMEOUT_S)
    await _bounded(name, "releasing the relay lease", runtime.relay.release_lease(), 0.5)
    await _close(name, runtime.bus, runtime.database, runtime.liveness)


async def _close(service: str, bus: Bus, database: Database, liveness: Liveness) -> None:
    await _bounded(service, "closing the bus", bus.close(), CLOSE_TIMEOUT_S)
    await _bounded(service, "releasing the liveness lock", liveness.close(), CLOSE_TIMEOUT_S)
    await _bounded(service, "closing the database", database.dispose(), CLOSE_TIMEOUT_S)


async def _bounded(service: str, step: str, work: Awaitable[object], timeout_s: float) -> bool:
    """Run one step of a stop for at most ``timeout_s``; log and move on when it fails or
    overruns. Unlike ``wait_for``, it does not wait for a cancelled step to unwind: a step
    stuck in a driver call (a SQLite busy wait, an unreachable broker) cannot hold us."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        log.warning("%s: %s did not finish within %.1f s; going on", service, step, timeout_s)
        return False
    if task.exception() is not None:
        exc = task.exception()
        log.warning("%s: %s failed (%s: %s)", service, step, type(exc).__name__, exc)
        return False
    return True


#: How long a scrape waits for the gauges' refresh; then it shows their previous values.
SCRAPE_REFRESH_TIMEOUT_S = 2.0


def _scrape_refreshes(runtime: Runtime) -> list[ScrapeRefresh]:
    """The runtime's gauges (consumer lag, outbox backlog), then the service's own."""
    name = runtime.spec.name
    gauges = RuntimeGauges(
        name,
        runtime.bus,
        runtime.database,
        lambda: [(c.group, c.subscription.topics) for c in runtime.consumers],
    )
    refreshes = [ScrapeRefresh(gauges.refresh, name=name, timeout_s=SCRAPE_REFRESH_TIMEOUT_S)]
    for own in runtime.spec.gauges:

        def refresh(own: ScrapedGauges = own) -> Awaitable[Any]:
            return own.refresh(runtime)

        refreshes.append(
            ScrapeRefresh(
                refresh,
                name=f"{name} {own.name}",
                timeout_s=SCRAPE_REFRESH_TIMEOUT_S,
                min_interval_s=own.min_interval_s,
            )
        )
    return refreshes


def _job_loop(runtime: Runtime, job: ScheduledJob) -> Callable[[], Awaitable[None]]:
    """A scheduled job as a supervised task: run, wait its interval, repeat; a failure
    ends the task, and the supervisor logs it and restarts it with backoff."""

    async def loop() -> None:
        while True:
            await job.run(runtime)
            await asyncio.sleep(job.interval_s)

    return loop


def _health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Database and bus reachable, every background task running (503 otherwise)",
    )
    async def readyz(request: Request) -> JSONResponse:
        runtime = runtime_of(request)
        checks: dict[str, str] = {}
        for name, ping in (("database", runtime.database.ping), ("bus", runtime.bus.ping)):
            try:
                await asyncio.wait_for(ping(), 5)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unreachable: {type(exc).__name__}: {exc}"
        down = runtime.supervisor.down()
        tasks = {name: down.get(name, "ok") for name in runtime.supervisor.names}
        ready = all(v == "ok" for v in checks.values()) and not down
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks, "tasks": tasks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        # Gauges of state (lag, backlog, the service's figures) are read now, bounded.
        await asyncio.gather(*(refresh() for refresh in runtime_of(request).scrape))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


class ClockBody(BaseModel):
    """Where to set the manual clock: an instant with a UTC offset, 2000-01-01T00:00:00Z to
    2199-12-31T23:59:59Z."""

    now: AwareDatetime

    @field_validator("now", mode="before")
    @classmethod
    def _an_instant_text(cls, value: object) -> object:
        # pydantic would also take a number as Unix seconds; the document says a string.
        if not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 instant with an offset, as a string")
        return value

    @field_validator("now")
    @classmethod
    def _within_range(cls, value: datetime) -> datetime:
        # Compared before any conversion: 0001-01-01T00:00+05:00 cannot even become UTC.
        if not CLOCK_MIN <= value <= CLOCK_MAX:
            raise ValueError(f"must be from {CLOCK_MIN.isoformat()} to {CLOCK_MAX.isoformat()}")
        return value


def _admin_router() -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin (manual clock)"])

    @router.get("/clock", summary="The service's current time")
    async def get_clock(request: Request, _admin: Admin) -> dict[str, datetime]:
        return {"now": runtime_of(request).clock.now()}

    @router.put("/clock", summary="Move the manual clock forward (backwards is a 409)")
    async def set_clock(body: ClockBody, request: Request, _admin: Admin) -> dict[str, datetime]:
        runtime = runtime_of(request)
        clock = runtime.clock
        assert isinstance(clock, ManualClock)
        try:
            # Under the clock's lock: a concurrent set or tick sees one order of instants,
            # and the stored instant is the clock's.
            async with clock.lock:
                now = clock.set(body.now)
                await clock_store.save(runtime.database, now)
            return {"now": now}
        except ClockWentBackwards as exc:
            raise Problem(409, str(exc), type_="clock-went-backwards") from exc
        except ClockOutOfRange as exc:  # the body's validator already refuses these
            raise Problem(422, str(exc), type_="validation-error") from exc

    @router.post("/tick", summary="Run due scheduled work now and wait until it is published")
    async def tick(request: Request, _admin: Admin) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert isinstance(runtime.clock, ManualClock)
        async with runtime.clock.lock:
            await runtime.run_jobs()
        return {"now": runtime.clock.now(), "jobs": [job.name for job in runtime.jobs]}

    return router


def _instrument(app: FastAPI) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="healthz,readyz,metrics",
        server_request_hook=scrub_url_attributes,
    )
    HTTPXClientInstrumentor().instrument(request_hook=scrub_url_attributes)


def entrypoints(spec: ServiceSpec) -> tuple[Callable[[], FastAPI], Callable[[], None]]:
    """A service module's ``app`` (ASGI factory for ``uvicorn --factory``) and ``main``."""

    def app() -> FastAPI:
        return create_app(spec)

    def main() -> None:
        from dunning_runtime.serving import run  # uvicorn: only in the console script

        run(spec)

    return app, main
