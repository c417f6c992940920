"""payment-svc test fixtures: the app on the active backends with a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from payment_fixtures import SECRETS, START

from dunning_runtime.app import create_app
from payment_svc.main import SPEC
from tests.support.fixtures import ADMIN, running


@pytest.fixture
def payment_settings(settings_factory):
    return settings_factory("payment-svc", clock="manual", webhook_secrets=SECRETS)


@pytest.fixture
async def client(payment_settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SPEC, payment_settings)
    async with running(app) as http:
        http.app = app  # type: ignore[attr-defined]
        assert (
            await http.put("/v1/admin/clock", json={"now": START}, headers=ADMIN)
        ).status_code == 200
        yield http
