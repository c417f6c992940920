"""notify-svc test fixtures: the service on the active backends with a manual clock,
talking to a real SMTP server and a real HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from notify_fixtures import START, WEBHOOK_SECRET, HttpServer, SmtpServer, http_server, smtp_server

from dunning_runtime.app import create_app
from notify_svc.main import SPEC
from tests.support.fixtures import ADMIN, running


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    async with smtp_server() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[HttpServer]:
    async with http_server() as server:
        yield server


@pytest.fixture
def notify_settings(
    settings_factory: Callable[..., Any], smtp: SmtpServer, http: HttpServer
) -> Any:
    return settings_factory(
        "notify-svc",
        clock="manual",
        smtp_url=f"smtp://127.0.0.1:{smtp.port}",
        smtp_starttls="off",
        smtp_timeout_s=5,
        sms_url=f"{http.url}/sms",
        sms_token="sms-token",
        outgoing_webhook_secrets={"acme": WEBHOOK_SECRET, "globex": "whsec-globex"},
        http_timeout_s=0.5,
        delivery_backoff_s=0.02,
        delivery_backoff_max_s=0.1,
        delivery_retry_max_s=3,
        # More than an attempt (smtp_timeout_s) and the backoff after it, as required.
        delivery_lease_s=5.2,
    )


@pytest.fixture
async def client(notify_settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SPEC, notify_settings)
    async with running(app) as http_client:
        http_client.app = app  # type: ignore[attr-defined]
        response = await http_client.put("/v1/admin/clock", json={"now": START}, headers=ADMIN)
        assert response.status_code == 200
        yield http_client
