"""Bulk writes (``dunning_runtime.bulk``) store exactly what SQLAlchemy Core's statements
store: the same rows, the same JSON text, the same updates (the last of a key given
twice), on both backends (``unnest`` on PostgreSQL, Core itself on SQLite)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from asyncpg import PostgresError
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    cast,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError

from dunning_runtime import bulk
from dunning_runtime.db import Database, SequenceId

metadata = MetaData()


def _table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("seq", SequenceId, primary_key=True, autoincrement=True),
        Column("tenant", String(100), nullable=False),
        Column("item", String(100), nullable=False),
        Column("minor", BigInteger, nullable=False),
        Column("flag", Boolean, nullable=False),
        Column("day", Date, nullable=False),
        Column("at", DateTime(timezone=True)),
        Column("note", Text),
        Column("doc", JSON, nullable=False),
    )


core, fast = _table("bulk_core"), _table("bulk_fast")

ROWS: list[dict[str, Any]] = [
    {
        "tenant": "acme" if i % 3 else "globex",
        "item": f"I-{i}",
        "minor": i * 10**12 - 7,
        "flag": i % 2 == 0,
        "day": date(2027, 1, 1 + i % 28),
        "at": datetime(2027, 1, 4, 8, i % 60, tzinfo=UTC) if i % 4 else None,
        "note": None if i % 5 == 0 else f"line\n\ttab 'quote' \"dq\" ü {i}",
        # JSON null, nesting, unicode and numbers: the stored text must be Core's own.
        "doc": None if i == 3 else {"n": i, "name": "Müller ✓", "list": [1, "2", None]},
    }
    for i in range(1, 40)
]


async def _database(settings_factory: Any) -> Database:
    settings = settings_factory("bulk")
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    async with database.engine.begin() as conn:
        if database.schema:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
        await conn.run_sync(metadata.create_all)
    return database


async def _stored(database: Database, table: Table) -> list[tuple[Any, ...]]:
    async with database.sessions() as session:
        rows = await session.execute(
            select(*[c for c in table.c if c.name != "doc"], cast(table.c.doc, Text)).order_by(
                table.c.seq
            )
        )
        return [tuple(r) for r in rows]


async def test_bulk_insert_and_update_store_what_core_stores(settings_factory: Any) -> None:
    database = await _database(settings_factory)
    try:
        async with database.transaction() as session:
            await session.execute(insert(core), ROWS)
            await bulk.insert_rows(session, fast, ROWS)
        assert await _stored(database, fast) == await _stored(database, core)

        changes = [
            {"seq": 5, "minor": 1, "note": None, "doc": {"changed": True}, "at": None},
            {
                "seq": 2,
                "minor": -2,
                "note": "two",
                "doc": None,
                "at": datetime(2027, 2, 1, tzinfo=UTC),
            },
            # The same key again: the last one wins, as in one UPDATE per row in order.
            {"seq": 5, "minor": 55, "note": "five", "doc": [5], "at": None},
            {"seq": 999, "minor": 9, "note": "no such row", "doc": {}, "at": None},
        ]
        columns = ("minor", "note", "doc", "at")
        async with database.transaction() as session:
            await session.execute(
                update(core)
                .where(core.c.seq == bindparam("k_seq"))
                .values({c: bindparam(f"v_{c}") for c in columns}),
                [{"k_seq": r["seq"], **{f"v_{c}": r[c] for c in columns}} for r in changes],
            )
            await bulk.update_rows(session, fast, changes, "seq", columns)
        assert await _stored(database, fast) == await _stored(database, core)
    finally:
        await database.dispose()


async def test_bulk_writes_share_the_callers_transaction(settings_factory: Any) -> None:
    database = await _database(settings_factory)
    try:
        async with database.sessions() as session:
            await bulk.insert_rows(session, fast, ROWS[:3])
            await bulk.update_rows(session, fast, [{"seq": 1, "minor": 0}], "seq", ["minor"])
            await session.rollback()
        assert await _stored(database, fast) == []
    finally:
        await database.dispose()


async def test_pairs_in_finds_what_a_row_value_in_finds(settings_factory: Any) -> None:
    database = await _database(settings_factory)
    try:
        async with database.transaction() as session:
            await bulk.insert_rows(session, fast, ROWS)
        wanted = [("acme", "I-1"), ("globex", "I-3"), ("acme", "I-3"), ("globex", "I-6")]
        wanted += [("acme", "I-404"), ("initech", "I-1")]
        async with database.sessions() as session:
            by_pairs = await session.execute(
                select(fast.c.item, fast.c.tenant)
                .where(bulk.pairs_in(fast.c.tenant, fast.c.item, wanted))
                .order_by(fast.c.seq)
            )
            by_rows = await session.execute(
                select(fast.c.item, fast.c.tenant)
                .where(tuple_(fast.c.tenant, fast.c.item).in_(wanted))
                .order_by(fast.c.seq)
            )
            assert (
                list(by_pairs)
                == list(by_rows)
                == [
                    ("I-1", "acme"),
                    ("I-3", "globex"),
                    ("I-6", "globex"),
                ]
            )
    finally:
        await database.dispose()


async def test_bulk_writes_refuse_an_over_long_value_as_core_does(settings_factory: Any) -> None:
    """A value longer than its ``varchar(n)`` is refused, never cut to ``n`` characters:
    cut, an over-long key would update the row whose key is its first ``n`` characters."""
    database = await _database(settings_factory)
    if database.engine.dialect.name != "postgresql":
        await database.dispose()
        pytest.skip("SQLite does not enforce a varchar's length")
    too_long = {**ROWS[0], "item": "I" * 101}
    try:
        for table, write in (
            (core, lambda s: s.execute(insert(core), [too_long])),
            (fast, lambda s: bulk.insert_rows(s, fast, [too_long])),
        ):
            # Core wraps the driver's error, the raw asyncpg path raises it as it is.
            with pytest.raises((DBAPIError, PostgresError), match="too long"):
                async with database.transaction() as session:
                    await write(session)
            assert await _stored(database, table) == []
        async with database.transaction() as session:
            await bulk.insert_rows(session, fast, [{**ROWS[0], "item": "I" * 100}])
        before = await _stored(database, fast)
        assert len(before) == 1
        async with database.transaction() as session:
            await bulk.update_rows(session, fast, [{**too_long, "minor": 1}], "item", ["minor"])
        assert await _stored(database, fast) == before
    finally:
        await database.dispose()
