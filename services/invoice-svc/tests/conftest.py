"""invoice-svc test fixtures: the app on the active backends with a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from invoice_fixtures import START

from dunning_runtime.app import create_app
from invoice_svc.main import SPEC
from tests.support.fixtures import ADMIN, running


@pytest.fixture
def invoice_settings(settings_factory):
    return settings_factory("invoice-svc", clock="manual", tenant_grace_days="acme:2")


@pytest.fixture
async def client(invoice_settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SPEC, invoice_settings)
    async with running(app) as http:
        http.app = app  # type: ignore[attr-defined]
        assert (
            await http.put("/v1/admin/clock", json={"now": START}, headers=ADMIN)
        ).status_code == 200
        yield http
