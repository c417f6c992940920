"""A database that is away is a temporary condition: 503 with Retry-After, never a 500.

During a PostgreSQL restart the services answered 500 ``internal-error`` while
``/readyz`` already said 503; a client (an ERP) reads a 500 as a bug and a 503 as
"retry later". Here the database goes away for real, behind a TCP proxy the test cuts
(PostgreSQL), or by another connection holding SQLite's write lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from dunning_runtime import db, idempotency
from dunning_runtime.app import create_app
from dunning_runtime.settings import ServiceSettings
from invoice_svc.main import SPEC
from tests.support.fixtures import running
from tests.support.tcp_proxy import TcpProxy

KEY = {"Authorization": "Bearer acme-key"}


def invoice(number: int) -> dict[str, Any]:
    return {
        "invoice_id": f"INV-{number}",
        "account_id": "ACME",
        "account_name": "ACME GmbH",
        "contact": {"name": "Dana", "email": "ap@acme.example"},
        "currency": "EUR",
        "amount_due": "100.00",
        "issue_date": "2026-02-01",
        "due_date": "2026-03-03",
    }


class Outage:
    """Takes the service's database away and brings it back, on either backend."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.url = settings.effective_database_url
        self.proxy: TcpProxy | None = None
        self.blocker: sqlite3.Connection | None = None

    async def database_url(self) -> str:
        if not self.url.startswith("postgresql"):
            return self.url
        url = make_url(self.url)
        self.proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        await self.proxy.start()
        return url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)

    async def begin(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
            return
        path = make_url(self.url).database or ""

        def lock() -> sqlite3.Connection:
            # Another process holds the write lock (WAL still lets readers in). Off the
            # event loop: a service transaction holding the lock must be able to finish.
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN IMMEDIATE")
            return conn

        self.blocker = await asyncio.to_thread(lock)

    def end(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        if self.blocker is not None:
            self.blocker.rollback()
            self.blocker.close()
            self.blocker = None

    async def close(self) -> None:
        self.end()
        if self.proxy is not None:
            await self.proxy.stop()


@pytest.fixture
async def outage(settings_factory: Callable[..., ServiceSettings]) -> AsyncIterator[Any]:
    settings = settings_factory("invoice-svc")
    away = Outage(settings)
    settings = settings_factory("invoice-svc", database_url=await away.database_url())
    try:
        yield away, settings
    finally:
        await away.close()


async def test_requests_while_the_database_is_away_get_503_with_retry_after(
    outage, monkeypatch
) -> None:
    away, settings = outage
    # SQLite: fail within 0.2 s instead of waiting a minute for the lock.
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 200)
    app = create_app(SPEC, settings)
    async with running(app) as client:
        assert (await client.post("/v1/invoices", json=invoice(1), headers=KEY)).status_code == 201
        await away.begin()
        try:
            requests = [client.post("/v1/invoices", json=invoice(2), headers=KEY)]
            if away.proxy is not None:  # on PostgreSQL reads fail too
                requests.append(client.get("/v1/invoices/INV-1", headers=KEY))
            for request in requests:
                response = await request
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/problem+json"
                assert int(response.headers["retry-after"]) > 0
                body = response.json()
                assert body["type"].endswith("/service-unavailable") and body["status"] == 503
                assert "error_id" not in body
        finally:
            away.end()
        # Back: the retried request is applied, once, and what was accepted before is there.
        retried = await client.post("/v1/invoices", json=invoice(2), headers=KEY)
        assert retried.status_code == 201, retried.text
        assert (await client.get("/v1/invoices/INV-1", headers=KEY)).status_code == 200
        again = await client.post("/v1/invoices", json=invoice(2), headers=KEY)
        assert again.status_code == 200


async def test_an_unexpected_error_is_still_a_500_with_an_error_id(settings_factory) -> None:
    from fastapi import APIRouter

    from tests.support.fixtures import ledger_spec

    router = APIRouter()

    @router.get("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    app = create_app(ledger_spec(router), settings_factory("ledger-svc"))
    async with running(app) as client:
        response = await client.get("/v1/broken", headers=KEY)
    assert response.status_code == 500
    assert response.json()["type"].endswith("/internal-error") and response.json()["error_id"]
    assert "retry-after" not in response.headers


async def test_a_key_whose_request_met_the_outage_is_free_once_the_database_is_back(
    outage, monkeypatch
) -> None:
    """Found by the fault suite: the key was claimed, the database went away, the request
    answered 503 and could not release its claim; as its owner (this process) lived on,
    every retry with the key got 409 "in use" for as long as the process ran."""
    away, settings = outage
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 200)
    claim = idempotency.in_transaction
    cut = False

    async def claim_then_go_away(database: Any, work: Any) -> Any:
        # The outage begins right after the claim is committed, before the request's work.
        nonlocal cut
        result = await claim(database, work)
        if not cut:
            cut = True
            await away.begin()
        return result

    monkeypatch.setattr(idempotency, "in_transaction", claim_then_go_away)
    app = create_app(SPEC, settings)
    headers = {**KEY, "Idempotency-Key": "erp-batch-7"}
    async with running(app) as client:
        try:
            first = await client.post("/v1/invoices", json=invoice(3), headers=headers)
            assert first.status_code == 503, first.text
        finally:
            away.end()
        # The ERP retries as Retry-After says; the key is free within a few of its retries.
        for _ in range(40):
            retried = await client.post("/v1/invoices", json=invoice(3), headers=headers)
            if retried.status_code != 409:
                break
            assert retried.json()["type"].endswith("idempotency-key-in-use")
            await asyncio.sleep(0.25)
        assert retried.status_code == 201, retried.text
