"""The store: migrations on both backends, and a schema per service on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import event, inspect, text

from dunning_runtime.db import POOL_CONNECTIONS, Database
from dunning_runtime.migrations import MESSAGING
from tests.support import ledger
from tests.support.servers import require_postgres


async def table_names(database: Database) -> set[str]:
    async with database.engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_migrations_create_messaging_tables_and_are_idempotent(settings_factory) -> None:
    settings = settings_factory("ledger")
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(ledger.VERSIONS)
    await database.migrate(ledger.VERSIONS)  # a restart migrates again: nothing to do
    assert {"outbox", "inbox", "outbox_relay_lease", "applied", "alembic_version"} <= (
        await table_names(database)
    )
    async with database.sessions() as session:
        heads = set(
            (await session.execute(text("SELECT version_num FROM alembic_version"))).scalars()
        )
    # One head per branch: the shared messaging tables and the service's own.
    messaging = sorted(p.stem for p in MESSAGING.glob("messaging_*.py"))[-1]
    assert heads == {messaging, "ledger_0001"}
    await database.dispose()


async def test_each_service_keeps_its_tables_in_its_own_postgres_schema() -> None:
    url = require_postgres()
    token = uuid.uuid4().hex[:8]
    invoice = Database(url, schema=f"invoice_{token}")
    payment = Database(url, schema=f"payment_{token}")
    try:
        await invoice.migrate(ledger.VERSIONS)
        await payment.migrate(ledger.VERSIONS)
        async with invoice.transaction() as session:
            await session.execute(
                text("INSERT INTO applied (event_id, account, seq) VALUES ('e1', 'a', 1)")
            )
        async with payment.sessions() as session:
            # Same table name, other schema: the invoice row is not visible here.
            assert (await session.execute(text("SELECT count(*) FROM applied"))).scalar_one() == 0
        async with invoice.sessions() as session:
            assert (await session.execute(text("SELECT count(*) FROM applied"))).scalar_one() == 1
            schemas = set(
                (
                    await session.execute(
                        text(
                            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox'"
                        )
                    )
                ).scalars()
            )
        assert {f"invoice_{token}", f"payment_{token}"} <= schemas
    finally:
        for database in (invoice, payment):
            async with database.engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{database.schema}" CASCADE'))
            await database.dispose()


async def test_a_burst_of_transactions_reuses_the_pools_connections() -> None:
    """As many transactions at once as before (``POOL_CONNECTIONS``, the old 10 kept plus
    10 overflow), and after a burst every connection stays pooled: the next burst opens
    none (before, the 10 overflow connections were closed on return and opened again)."""
    database = Database(require_postgres(), schema=f"pool_{uuid.uuid4().hex[:8]}")
    opened: list[object] = []
    event.listen(database.engine.sync_engine, "connect", lambda *_: opened.append(1))
    gate = asyncio.Event()

    async def hold() -> None:
        async with database.sessions() as session:
            await session.execute(text("SELECT 1"))
            await gate.wait()

    try:
        for _ in range(2):
            tasks = [asyncio.create_task(hold()) for _ in range(POOL_CONNECTIONS)]
            await asyncio.sleep(0.5)
            gate.set()
            await asyncio.gather(*tasks)
            gate.clear()
        assert len(opened) == POOL_CONNECTIONS, "the second burst must reuse the first's"
        assert database.engine.pool.checkedin() == POOL_CONNECTIONS  # type: ignore[attr-defined]
        assert POOL_CONNECTIONS == 10 + 10, "the ceiling per process stays what it was"
    finally:
        await database.dispose()
