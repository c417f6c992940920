"""The inbox's upsert on PostgreSQL (one ``unnest`` statement on the raw asyncpg
connection) answers and stores exactly what the SQLAlchemy Core statement does.

Each case runs the same calls both ways on emptied tables and compares the ids
``record_new`` returns and every stored column (``received_at`` aside, a clock
reading: only checked to be set, and moved by a replay of a dead-lettered event). On
SQLite the two ways are the same path, so the test only checks it round-trips.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from dunning_runtime import inbox
from dunning_runtime.db import Database, utc
from dunning_runtime.messaging_tables import inbox as inbox_table
from tests.support import ledger

Stored = list[tuple[Any, ...]]

_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


async def _no_driver(session: Any) -> None:
    return None


async def _run(database: Database) -> tuple[list[set[str]], Stored]:
    """New ids, a duplicate, one dead-lettered and replayed, another group, non-ASCII ids."""
    answers = []
    async with database.transaction() as session:
        answers.append(
            await inbox.record_new(
                session, "g1", [("e-1", "invoices"), ("e-2", "invoices"), ("é-ü-東", "payments")]
            )
        )
        await inbox.record_dead(session, "g1", "e-dead", "invoices")
    async with database.transaction() as session:
        # Moved back in time, so that a replay's new ``received_at`` shows.
        await session.execute(
            update(inbox_table).where(inbox_table.c.event_id == "e-dead").values(received_at=_EPOCH)
        )
    async with database.transaction() as session:
        answers.append(
            await inbox.record_new(
                session,
                "g1",
                [("e-2", "invoices"), ("e-dead", "invoices"), ("e-3", "invoices")],
            )
        )
        answers.append(await inbox.record_new(session, "g2", [("e-1", "invoices")]))
        answers.append(await inbox.record_new(session, "g2", []))
    async with database.sessions() as session:
        rows = (
            await session.execute(
                select(inbox_table).order_by(inbox_table.c.consumer_group, inbox_table.c.event_id)
            )
        ).all()
    stored = [(r.consumer_group, r.event_id, r.topic, r.outcome) for r in rows]
    assert all(utc(r.received_at) is not None for r in rows)
    replayed = [r for r in rows if r.event_id == "e-dead"]
    assert utc(replayed[0].received_at) != utc(_EPOCH)  # a replay notes its new arrival
    return answers, stored


async def test_the_inbox_upsert_matches_the_core_statement(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_factory("ledger")
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(ledger.VERSIONS)
    try:
        fast = await _run(database)
        async with database.transaction() as session:
            await session.execute(delete(inbox_table))
        with monkeypatch.context() as patched:
            patched.setattr(inbox, "driver_connection", _no_driver)
            core = await _run(database)
        assert fast == core
        assert fast[0] == [{"e-1", "e-2", "é-ü-東"}, {"e-dead", "e-3"}, {"e-1"}, set()]
        assert ("g1", "e-dead", "invoices", inbox.APPLIED) in fast[1]
    finally:
        await database.dispose()


async def test_the_inbox_upsert_refuses_an_over_long_id_as_the_core_statement_does(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value longer than its column is refused both ways, never cut to fit."""
    settings = settings_factory("ledger")
    if not settings.effective_database_url.startswith("postgresql"):
        pytest.skip("SQLite does not enforce VARCHAR lengths (one path there)")
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(ledger.VERSIONS)
    long_id = "x" * 65  # the column is VARCHAR(64)
    try:
        for patch in (False, True):
            with monkeypatch.context() as patched:
                if patch:
                    patched.setattr(inbox, "driver_connection", _no_driver)
                with pytest.raises(Exception, match="too long"):
                    async with database.transaction() as session:
                        await inbox.record_new(session, "g1", [(long_id, "invoices")])
    finally:
        await database.dispose()
