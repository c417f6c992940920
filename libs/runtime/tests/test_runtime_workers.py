"""Workers declared on the ServiceSpec: made at start, supervised, found by type, stopped.

Also the runtime's typed settings (``Runtime[S]``, ``runtime_of``) and a service's
event scope (``Scope.of``, ``runtime.scope``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import APIRouter, Request

from dunning_runtime.app import (
    Runtime,
    WorkerSpec,
    create_app,
    runtime_of,
    start_runtime,
    stop_runtime,
)
from dunning_runtime.outbox import Outbox
from dunning_runtime.scope import Scope, source_of
from dunning_runtime.settings import ServiceSettings
from invoice_svc.settings import InvoiceSettings
from notify_svc.settings import NotifySettings
from tests.support.fixtures import ledger_spec, running, until


class Counter:
    """A worker that counts its runs and wakes; its first run fails when told to."""

    def __init__(self, runtime: Runtime, *, fail_first: bool = False) -> None:
        self.runtime = runtime
        self.runs = 0
        self.woken = asyncio.Event()
        self.cancelled = False
        self.fail_first = fail_first

    def wake(self) -> None:
        self.woken.set()

    async def run(self) -> None:
        self.runs += 1
        if self.fail_first and self.runs == 1:
            raise RuntimeError("first run fails")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Other:
    async def run(self) -> None:
        await asyncio.Event().wait()


async def _started(
    settings_factory: Callable[..., ServiceSettings], *workers: WorkerSpec, **changes: Any
) -> Runtime:
    spec = ledger_spec(workers=workers, **changes)
    return await start_runtime(spec, settings_factory("ledger-svc"))


async def test_a_worker_is_made_at_start_run_supervised_and_found_by_type(
    settings_factory: Callable[..., ServiceSettings],
) -> None:
    seen_by_subscription: list[Counter] = []
    spec = ledger_spec()
    [ledger_subscription] = spec.subscriptions

    def subscription(runtime: Runtime) -> Any:
        # Built after the workers: a handler can hold the worker's wake.
        seen_by_subscription.append(runtime.worker(Counter))
        return ledger_subscription(runtime)

    runtime = await _started(
        settings_factory,
        WorkerSpec("ledger-svc-counter", Counter),
        WorkerSpec("ledger-svc-other", lambda _runtime: Other()),
        subscriptions=(subscription,),
    )
    try:
        counter = runtime.worker(Counter)
        assert seen_by_subscription == [counter]
        assert counter.runtime is runtime
        assert isinstance(runtime.worker(Other), Other)
        assert list(runtime.workers) == ["ledger-svc-counter", "ledger-svc-other"]
        # Started after the consumers, under the supervisor.
        names = runtime.supervisor.names
        assert names.index("ledger-svc-counter") > names.index("ledger")
        await until(lambda: _ran(counter), what="the worker runs")
        counter.wake()
        assert counter.woken.is_set()
        with pytest.raises(LookupError):
            runtime.worker(str)
    finally:
        await stop_runtime(runtime)
    assert counter.cancelled


async def _ran(counter: Counter) -> bool:
    return counter.runs >= 1


async def test_a_worker_that_dies_is_restarted(
    settings_factory: Callable[..., ServiceSettings],
) -> None:
    runtime = await _started(
        settings_factory, WorkerSpec("ledger-svc-counter", lambda r: Counter(r, fail_first=True))
    )
    try:
        counter = runtime.worker(Counter)

        async def restarted() -> bool:
            return counter.runs >= 2 and not runtime.supervisor.down()

        await until(restarted, what="the worker restarts")
        assert runtime.supervisor.restarts("ledger-svc-counter") == 1
    finally:
        await stop_runtime(runtime)
    assert counter.cancelled


async def test_runtime_of_is_typed_by_the_settings_class(
    settings_factory: Callable[..., ServiceSettings],
) -> None:
    router = APIRouter()
    answers: list[int] = []

    # A service's own settings class (a test-only subclass would join settings_types()).
    @router.get("/grace")
    async def grace(request: Request) -> dict[str, int]:
        settings = runtime_of(request, InvoiceSettings).settings
        answers.append(settings.grace_days)  # typed: no isinstance needed
        return {"grace_days": settings.grace_days}

    @router.get("/wrong")
    async def wrong(request: Request) -> None:
        runtime_of(request, NotifySettings)

    spec = ledger_spec(router, settings_type=InvoiceSettings)
    app = create_app(spec, settings_factory("ledger-svc"))
    async with running(app) as client:
        headers = {"Authorization": "Bearer acme-key"}
        assert (await client.get("/grace", headers=headers)).json() == {"grace_days": 0}
        # A wiring mistake: a 500 (logged with the TypeError), not another service's fields.
        assert (await client.get("/wrong", headers=headers)).status_code == 500
    assert answers == [0]


def test_a_services_scope_carries_its_source() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    outbox = Outbox()
    scope = Scope.of("invoice-svc", "acme", now, outbox)
    assert scope == Scope("acme", now, outbox, "/invoice-svc")
    assert source_of("notify-svc") == "/notify-svc"


async def test_the_runtime_makes_its_services_scope(
    settings_factory: Callable[..., ServiceSettings],
) -> None:
    runtime = await _started(settings_factory)
    try:
        at = datetime(2026, 1, 2, tzinfo=UTC)
        assert runtime.scope("acme", at) == Scope("acme", at, runtime.outbox, "/ledger-svc")
        assert runtime.scope("acme").now <= runtime.clock.now()
    finally:
        await stop_runtime(runtime)
