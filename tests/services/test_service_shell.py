"""Every service's shell: health, readiness, OpenAPI, metrics, keys, guards and the manual clock."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import func, insert, select, update

from dunning_runtime.app import ServiceSpec, create_app
from dunning_runtime.bus import KafkaBus
from dunning_runtime.bus.embedded import EmbeddedConsumer
from dunning_runtime.bus.kafka import KafkaConsumer
from dunning_runtime.http_guards import DEFAULT_BODY_LIMIT, BodyLimits
from dunning_runtime.messaging_tables import idempotency_keys
from dunning_runtime.messaging_tables import inbox as inbox_table
from dunning_svc.main import SPEC as DUNNING
from invoice_svc.main import SPEC as INVOICE
from notify_svc.main import SPEC as NOTIFY
from payment_svc.main import SPEC as PAYMENT
from tests.support import ledger
from tests.support.events import message, overdue
from tests.support.fixtures import ADMIN, ledger_spec, running, until

SPECS = [INVOICE, PAYMENT, DUNNING, NOTIFY]
AUTH = {"Authorization": "Bearer acme-key"}


@pytest.fixture(params=SPECS, ids=[s.name for s in SPECS])
async def client(request, settings_factory) -> AsyncIterator[httpx.AsyncClient]:
    spec: ServiceSpec = request.param
    app = create_app(spec, settings_factory(spec.name, clock="manual"))
    async with running(app) as http:
        http.app = app  # type: ignore[attr-defined]
        yield http


def problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status
    return body


async def test_health_ready_openapi_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "bus": "ok"}
    app: FastAPI = client.app  # type: ignore[attr-defined]
    tasks = ready.json()["tasks"]
    assert tasks == dict.fromkeys(app.state.runtime.supervisor.names, "ok")
    assert f"{app.state.runtime.spec.name}-relay" in tasks
    spec = (await client.get("/openapi.json")).json()
    assert spec["info"]["title"] == app.title
    assert "/v1/admin/tick" in spec["paths"]
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "dunning_events_published_total" in metrics.text


async def test_readyz_is_503_when_the_bus_is_unreachable(client: httpx.AsyncClient) -> None:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    runtime = app.state.runtime
    real_bus, runtime.bus = runtime.bus, KafkaBus(["127.0.0.1:1"])
    try:
        ready = await client.get("/readyz")
    finally:
        runtime.bus = real_bus
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["bus"].startswith("unreachable")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic acme-key", "Bearer "])
@pytest.mark.parametrize("path", ["/v1/admin/clock", "/v1/anything"])
async def test_v1_routes_need_a_valid_key(
    client: httpx.AsyncClient, header: str | None, path: str
) -> None:
    headers = {"Authorization": header} if header else {}
    response = await client.get(path, headers=headers)
    problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_admin_routes_need_the_admin_key_not_a_tenant_key(
    client: httpx.AsyncClient,
) -> None:
    for method, path in [("GET", "/v1/admin/clock"), ("POST", "/v1/admin/tick")]:
        refused = await client.request(method, path, headers=AUTH)
        assert "admin key" in str(problem(refused, 403)["detail"])
        assert (await client.request(method, path, headers=ADMIN)).status_code == 200
    moved = await client.put("/v1/admin/clock", json={"now": "2031-01-01T00:00:00Z"}, headers=AUTH)
    problem(moved, 403)
    clock = (await client.get("/v1/admin/clock", headers=ADMIN)).json()["now"]
    assert clock != "2031-01-01T00:00:00Z"


async def test_admin_routes_refuse_everyone_without_a_configured_admin_key(
    settings_factory,
) -> None:
    app = create_app(INVOICE, settings_factory(INVOICE.name, clock="manual", admin_key=""))
    async with running(app) as http:
        for headers in ({"Authorization": "Bearer "}, AUTH, {"Authorization": "Bearer x"}):
            assert (await http.get("/v1/admin/clock", headers=headers)).status_code in (401, 403)


async def test_manual_clock_moves_forward_only(client: httpx.AsyncClient) -> None:
    moved = await client.put(
        "/v1/admin/clock", json={"now": "2030-01-15T09:00:00+01:00"}, headers=ADMIN
    )
    assert moved.status_code == 200
    assert moved.json()["now"] == "2030-01-15T08:00:00Z"
    back = await client.put("/v1/admin/clock", json={"now": "2030-01-01T00:00:00Z"}, headers=ADMIN)
    assert "cannot move back" in str(problem(back, 409)["detail"])
    now = (await client.get("/v1/admin/clock", headers=ADMIN)).json()["now"]
    assert now == "2030-01-15T08:00:00Z"
    tick = await client.post("/v1/admin/tick", headers=ADMIN)
    assert tick.status_code == 200
    assert tick.json()["now"] == "2030-01-15T08:00:00Z"


async def test_a_restarted_service_goes_on_at_the_manual_clocks_time(settings_factory) -> None:
    """The manual clock's instant is kept in the service's database: a restart in the
    middle of a simulation neither falls back to the wall clock nor refuses to go on."""
    settings = settings_factory(INVOICE.name, clock="manual")
    async with running(create_app(INVOICE, settings)) as http:
        moved = await http.put(
            "/v1/admin/clock", json={"now": "2031-06-01T09:00:00Z"}, headers=ADMIN
        )
        assert moved.status_code == 200
    async with running(create_app(INVOICE, settings)) as http:
        now = (await http.get("/v1/admin/clock", headers=ADMIN)).json()["now"]
        assert now == "2031-06-01T09:00:00Z"
        back = await http.put(
            "/v1/admin/clock", json={"now": "2031-05-01T00:00:00Z"}, headers=ADMIN
        )
        problem(back, 409)
        on = await http.put("/v1/admin/clock", json={"now": "2031-06-02T09:00:00Z"}, headers=ADMIN)
        assert on.status_code == 200 and on.json()["now"] == "2031-06-02T09:00:00Z"


@pytest.mark.parametrize("now", ["2030-01-15T09:00:00", 1519, 1.5e9, True])
async def test_invalid_clock_body_is_a_422_naming_the_field(
    client: httpx.AsyncClient, now: object
) -> None:
    # A number is not taken as Unix seconds: the document says an instant string (found
    # by the fuzz test: {"now": 1519} moved the clock).
    response = await client.put("/v1/admin/clock", json={"now": now}, headers=ADMIN)
    body = problem(response, 422)
    assert [e["field"] for e in body["errors"]] == ["body.now"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "instant",
    [
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-12:00",
        "1999-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "2199-12-31T23:59:59-00:01",
    ],
)
async def test_clock_outside_its_range_is_a_422_and_changes_nothing(
    client: httpx.AsyncClient, instant: str
) -> None:
    before = (await client.get("/v1/admin/clock", headers=ADMIN)).json()["now"]
    body = problem(await client.put("/v1/admin/clock", json={"now": instant}, headers=ADMIN), 422)
    assert [e["field"] for e in body["errors"]] == ["body.now"]  # type: ignore[attr-defined]
    assert "2000-01-01" in str(body["errors"])
    assert (await client.get("/v1/admin/clock", headers=ADMIN)).json()["now"] == before
    assert (await client.post("/v1/admin/tick", headers=ADMIN)).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize("instant", ["2000-01-01T00:00:00Z", "2199-12-31T23:59:59Z"])
async def test_clock_accepts_the_ends_of_its_range(client: httpx.AsyncClient, instant: str) -> None:
    moved = await client.put("/v1/admin/clock", json={"now": instant}, headers=ADMIN)
    assert moved.status_code == 200, moved.text
    assert (await client.post("/v1/admin/tick", headers=ADMIN)).status_code == 200


async def test_admin_routes_do_not_exist_on_the_system_clock(settings_factory) -> None:
    app = create_app(INVOICE, settings_factory(INVOICE.name))
    async with running(app) as http:
        assert (await http.post("/v1/admin/tick", headers=ADMIN)).status_code == 404
        assert "/v1/admin/tick" not in (await http.get("/openapi.json")).json()["paths"]


async def test_security_headers(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.headers["x-content-type-options"] == "nosniff"
    assert "cache-control" not in health.headers
    for response in (
        await client.get("/v1/admin/clock", headers=ADMIN),
        await client.get("/v1/admin/clock"),  # a 401 too
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"


# -- body limits and errors, on a service with routes of its own ------------------


class Note(BaseModel):
    text: str


def _routes() -> APIRouter:
    router = APIRouter()

    @router.post("/v1/notes")
    async def add_note(note: Note) -> dict[str, int]:
        return {"length": len(note.text)}

    @router.post("/v1/notes/{note_id}/attachments")
    async def attach(note_id: str, note: Note) -> dict[str, int]:
        return {"length": len(note.text)}

    @router.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("a bug, with a secret the client must not see")

    return router


SMALL = 1024
ATTACHMENTS = 1024 * 1024


@pytest.fixture
async def notes(settings_factory) -> AsyncIterator[httpx.AsyncClient]:
    spec = ledger_spec(
        _routes(),
        body_limits={"/v1/notes": SMALL, "/v1/notes/{note_id}/attachments": ATTACHMENTS},
    )
    app = create_app(spec, settings_factory(spec.name))
    async with running(app) as http:
        yield http


class Chunks:
    """A streamed request body that counts how many chunks were pulled from it."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk = chunk
        self.count = count
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield self.chunk


async def test_a_huge_body_without_a_key_is_never_read(notes: httpx.AsyncClient) -> None:
    body = Chunks(b"x" * 1024 * 1024, 200)  # 200 MB
    response = await notes.post(
        "/v1/notes", content=body, headers={"Content-Type": "application/json"}
    )
    problem(response, 401)
    assert body.pulled <= 1  # the transport may pull one chunk ahead; the app reads none


async def test_body_over_the_declared_limit_is_a_413_before_reading(
    notes: httpx.AsyncClient,
) -> None:
    body = Chunks(b"x" * 1024, 10)
    response = await notes.post(
        "/v1/notes",
        content=body,
        headers={**AUTH, "Content-Length": str(10 * 1024), "Content-Type": "application/json"},
    )
    problem(response, 413)
    assert body.pulled <= 1


async def test_streamed_body_over_the_limit_is_cut_off_with_a_413(
    notes: httpx.AsyncClient,
) -> None:
    body = Chunks(b" " * 512, 10_000)  # 5 MB of JSON whitespace, no Content-Length
    response = await notes.post(
        "/v1/notes", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    detail = problem(response, 413)["detail"]
    assert f"{SMALL:,} bytes" in str(detail)
    assert body.pulled <= SMALL // 512 + 2


async def test_limits_apply_per_route_with_templates(notes: httpx.AsyncClient) -> None:
    text = "x" * (SMALL * 4)
    problem(await notes.post("/v1/notes", json={"text": text}, headers=AUTH), 413)
    attached = await notes.post("/v1/notes/n-1/attachments", json={"text": text}, headers=AUTH)
    assert attached.json() == {"length": len(text)}
    huge = "x" * (ATTACHMENTS + 1)
    problem(await notes.post("/v1/notes/n-1/attachments", json={"text": huge}, headers=AUTH), 413)
    # Routes without an entry get the default limit, admin routes included.
    big = b"{" + b" " * DEFAULT_BODY_LIMIT + b"}"
    problem(await notes.post("/v1/anything", content=big, headers=AUTH), 413)


def test_body_limits_match_exact_paths_then_templates() -> None:
    limits = BodyLimits({"/v1/a/{id}/void": 5, "/v1/a/batch": 7, "/v1/a/{id}": 9}, default=1)
    assert limits.for_path("/v1/a/batch") == 7
    assert limits.for_path("/v1/a/x-1/void") == 5
    assert limits.for_path("/v1/a/x-1") == 9
    assert limits.for_path("/v1/a/x/y/void") == 1
    assert limits.for_path("/v1/b") == 1


async def test_an_unexpected_error_is_a_problem_500_with_an_id_in_the_log(
    notes: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await notes.get("/v1/boom", headers=AUTH)
    body = problem(response, 500)
    assert "secret" not in response.text
    error_id = str(body["error_id"])
    assert len(error_id) >= 16
    assert response.headers["x-content-type-options"] == "nosniff"
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "a bug" in str(logged[0].exc_info[1])


# -- supervision ---------------------------------------------------------------------


async def test_a_dead_consumer_is_named_by_readyz_restarted_and_applies_events(
    settings_factory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_factory("ledger-svc")
    consumer_class = EmbeddedConsumer if settings.is_embedded_bus else KafkaConsumer
    real_poll = consumer_class.poll
    broken = False

    async def poll(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if broken:
            raise RuntimeError("injected poll failure")
        return await real_poll(self, *args, **kwargs)

    monkeypatch.setattr(consumer_class, "poll", poll)
    app = create_app(ledger_spec(), settings)
    async with running(app) as http:
        runtime = app.state.runtime
        await until(lambda: _ready(http), what="readiness")
        broken = True

        async def names_the_consumer() -> bool:
            response = await http.get("/readyz")
            tasks = response.json()["tasks"]
            return response.status_code == 503 and tasks["ledger"].startswith("down: ")

        await until(names_the_consumer, what="readyz naming the dead consumer")
        body = (await http.get("/readyz")).json()
        assert body["tasks"]["ledger-svc-relay"] == "ok"
        broken = False
        await until(lambda: _ready(http), what="readiness after the restart")
        assert runtime.supervisor.restarts("ledger") >= 1
        await runtime.bus.publish([message(overdue("acc-1", seq)) for seq in range(1, 6)])

        async def applied() -> bool:
            return await ledger.count_applied(runtime.database) == 5

        await until(applied, what="events applied after the restart")
    died = [r for r in caplog.records if "task ledger died" in r.getMessage()]
    assert died and "injected poll failure" in died[0].getMessage()


async def _ready(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


# -- housekeeping --------------------------------------------------------------------


async def test_housekeeping_purges_inbox_and_keys_past_their_retention(settings_factory) -> None:
    settings = settings_factory("ledger-svc", clock="manual", inbox_retention_hours=24)
    app = create_app(ledger_spec(), settings)
    async with running(app) as http:
        runtime = app.state.runtime
        await runtime.bus.publish([message(overdue("acc-1", seq)) for seq in range(1, 4)])

        async def applied() -> bool:
            return await ledger.count_applied(runtime.database) == 3

        await until(applied, what="events applied")
        old = datetime.now(UTC) - timedelta(days=30)
        async with runtime.database.transaction() as session:
            # Two inbox rows and one key past their windows; the rest are recent.
            await session.execute(
                update(inbox_table)
                .where(inbox_table.c.event_id.in_(select(inbox_table.c.event_id).limit(2)))
                .values(received_at=old)
            )
            await session.execute(
                insert(idempotency_keys),
                [
                    _key("old", old),
                    _key("new", datetime.now(UTC)),
                ],
            )
        tick = await http.post("/v1/admin/tick", headers=ADMIN)
        assert tick.json()["jobs"] == ["ledger-svc-housekeeping"]
        async with runtime.database.sessions() as session:
            inbox_left = await session.execute(select(func.count()).select_from(inbox_table))
            keys_left = (await session.execute(select(idempotency_keys.c.key))).scalars().all()
        assert inbox_left.scalar_one() == 1
        assert keys_left == ["new"]


def _key(key: str, created_at: datetime) -> dict[str, object]:
    return {
        "tenant": "acme",
        "key": key,
        "request_hash": "0" * 64,
        "status_code": 201,
        "response": {},
        "created_at": created_at,
    }


async def test_housekeeping_runs_as_a_supervised_task_on_the_system_clock(
    settings_factory,
) -> None:
    app = create_app(ledger_spec(), settings_factory("ledger-svc"))
    async with running(app) as http:
        ready = await http.get("/readyz")
        assert ready.json()["tasks"]["ledger-svc-housekeeping"] == "ok"
