"""Every service's shell: health, readiness, OpenAPI, metrics, auth and the manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from dunning_runtime.app import ServiceSpec, create_app
from dunning_runtime.bus import KafkaBus
from dunning_svc.main import SPEC as DUNNING
from invoice_svc.main import SPEC as INVOICE
from notify_svc.main import SPEC as NOTIFY
from payment_svc.main import SPEC as PAYMENT

SPECS = [INVOICE, PAYMENT, DUNNING, NOTIFY]
AUTH = {"Authorization": "Bearer acme-key"}


@pytest.fixture(params=SPECS, ids=[s.name for s in SPECS])
async def client(request, settings_factory) -> AsyncIterator[httpx.AsyncClient]:
    spec: ServiceSpec = request.param
    app = create_app(spec, settings_factory(spec.name, clock="manual"))
    async with (
        LifespanManager(app, startup_timeout=60, shutdown_timeout=60),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http,
    ):
        http.app = app  # type: ignore[attr-defined]
        yield http


async def test_health_ready_openapi_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "bus": "ok"}
    spec = (await client.get("/openapi.json")).json()
    app: FastAPI = client.app  # type: ignore[attr-defined]
    assert spec["info"]["title"] == app.title
    assert "/v1/admin/tick" in spec["paths"]
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "dunning_outbox_published_total" in metrics.text


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
async def test_v1_routes_need_a_valid_key(client: httpx.AsyncClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = await client.get("/v1/admin/clock", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401


async def test_manual_clock_moves_forward_only(client: httpx.AsyncClient) -> None:
    moved = await client.put(
        "/v1/admin/clock", json={"now": "2030-01-15T09:00:00+01:00"}, headers=AUTH
    )
    assert moved.status_code == 200
    assert moved.json()["now"] == "2030-01-15T08:00:00Z"
    back = await client.put("/v1/admin/clock", json={"now": "2030-01-01T00:00:00Z"}, headers=AUTH)
    assert back.status_code == 409
    assert back.headers["content-type"] == "application/problem+json"
    assert "cannot move back" in back.json()["detail"]
    assert (await client.get("/v1/admin/clock", headers=AUTH)).json()[
        "now"
    ] == "2030-01-15T08:00:00Z"
    tick = await client.post("/v1/admin/tick", headers=AUTH)
    assert tick.status_code == 200
    assert tick.json()["now"] == "2030-01-15T08:00:00Z"


async def test_invalid_clock_body_is_a_422_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/v1/admin/clock", json={"now": "2030-01-15T09:00:00"}, headers=AUTH
    )
    assert response.status_code == 422
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in body["errors"]] == ["body.now"]


async def test_admin_routes_do_not_exist_on_the_system_clock(settings_factory) -> None:
    app = create_app(INVOICE, settings_factory(INVOICE.name))
    async with (
        LifespanManager(app, startup_timeout=60, shutdown_timeout=60),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http,
    ):
        assert (await http.post("/v1/admin/tick", headers=AUTH)).status_code == 404
        assert "/v1/admin/tick" not in (await http.get("/openapi.json")).json()["paths"]
