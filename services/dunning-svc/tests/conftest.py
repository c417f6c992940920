"""dunning-svc test fixtures: the app on the active backends with a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from dunning_runtime.app import create_app
from dunning_svc.main import SPEC
from tests.support.fixtures import ADMIN, running

START = "2026-03-01T10:00:00Z"


@pytest.fixture
def dunning_settings(settings_factory):
    return settings_factory("dunning-svc", clock="manual")


@pytest.fixture
async def client(dunning_settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SPEC, dunning_settings)
    async with running(app) as http:
        http.app = app  # type: ignore[attr-defined]
        assert (
            await http.put("/v1/admin/clock", json={"now": START}, headers=ADMIN)
        ).status_code == 200
        yield http
