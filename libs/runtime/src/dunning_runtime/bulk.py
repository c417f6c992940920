"""Bulk writes of many rows in one statement: ``unnest`` on PostgreSQL, Core on SQLite.

SQLAlchemy's executemany of an UPDATE is one statement per row on PostgreSQL (the
server parses, plans and runs each), and an INSERT of many rows binds every value as
its own parameter. Here the rows go as one array per column instead, through the raw
asyncpg connection of the caller's session, so they share its transaction:

- ``insert_rows``: ``INSERT INTO t (c…) SELECT * FROM unnest($1::type[], …)``;
- ``update_rows``: ``UPDATE t SET c = v.c, … FROM unnest(…) AS v(…) WHERE t.key = v.key``.

Each value goes through its column type's own bind processing (the JSON serializer of
a ``JSON`` column), so the stored bytes are those SQLAlchemy's statement would store.
On SQLite (one local writer, no round trips) the same calls run SQLAlchemy Core.
Storage modules call these with their own tables; the SQL stays theirs in kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, insert, or_, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

Row = Mapping[Any, Any]  # a dict, or a RowMapping as read


def is_postgresql(session: AsyncSession) -> bool:
    """Whether ``session`` talks to PostgreSQL (the bulk statements' home)."""
    return session.get_bind().dialect.name == "postgresql"


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[Row]) -> None:
    """Insert ``rows`` (every one with the same keys, the columns written) in one
    statement, in the caller's transaction."""
    if not rows:
        return
    if not is_postgresql(session):
        await session.execute(insert(table), list(rows))
        return
    names = list(rows[0])
    dialect = session.get_bind().dialect
    arrays = _columns(table, names, rows, dialect)
    casts = ", ".join(f"${n + 1}::{_array_type(table, c, dialect)}" for n, c in enumerate(names))
    columns = ", ".join(_quoted(c) for c in names)
    statement = f"INSERT INTO {_quoted(table.name)} ({columns}) SELECT * FROM unnest({casts})"
    await _execute(session, statement, arrays)


async def update_rows(
    session: AsyncSession, table: Table, rows: Sequence[Row], key: str, columns: Sequence[str]
) -> None:
    """Write ``columns`` of ``rows`` into the rows of ``table`` whose ``key`` column has
    each row's ``key`` value, in one statement; a key given twice keeps its last row
    (as one UPDATE per row in order would)."""
    if not rows:
        return
    if not is_postgresql(session):
        await session.execute(
            update(table)
            .where(table.c[key] == bindparam("k_key"))
            .values({c: bindparam(f"v_{c}") for c in columns}),
            [{"k_key": r[key], **{f"v_{c}": r[c] for c in columns}} for r in rows],
        )
        return
    last = list({r[key]: r for r in rows}.values())
    names = [key, *columns]
    dialect = session.get_bind().dialect
    arrays = _columns(table, names, last, dialect)
    casts = ", ".join(f"${n + 1}::{_array_type(table, c, dialect)}" for n, c in enumerate(names))
    given = ", ".join(f"v_{n}" for n in range(len(names)))
    sets = ", ".join(f"{_quoted(c)} = v.v_{n + 1}" for n, c in enumerate(columns))
    statement = (
        f"UPDATE {_quoted(table.name)} AS t SET {sets} "
        f"FROM unnest({casts}) AS v({given}) WHERE t.{_quoted(key)} = v.v_0"
    )
    await _execute(session, statement, arrays)


async def _execute(session: AsyncSession, statement: str, arrays: list[list[Any]]) -> None:
    # The session's own connection: the statement is part of its transaction.
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    # SQLAlchemy's asyncpg adapter opens the database transaction at its first statement;
    # a bulk statement first in a session must not run outside it (autocommit).
    driver: Any = raw.driver_connection
    if not driver.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
    await driver.execute(statement, *arrays)


def _columns(
    table: Table, names: Sequence[str], rows: Sequence[Row], dialect: Dialect
) -> list[list[Any]]:
    """One list per column, each value bound as its column type binds it."""
    arrays = []
    for name in names:
        process = _binder(table, name, dialect)
        values = [row[name] for row in rows]
        # None too: a JSON column stores it as JSON null, as SQLAlchemy's statement does.
        arrays.append([process(v) for v in values] if process else values)
    return arrays


def _binder(table: Table, name: str, dialect: Dialect) -> Callable[[Any], Any] | None:
    processor: Callable[[Any], Any] | None = (
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
    )
    return processor


def _array_type(table: Table, name: str, dialect: Dialect) -> str:
    return f"{table.c[name].type.compile(dialect=dialect)}[]"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pairs_in(
    first: ColumnElement[Any], second: ColumnElement[Any], pairs: Iterable[tuple[Any, Any]]
) -> ColumnElement[bool]:
    """``(first, second) IN pairs`` as one plain ``IN`` per value of ``first`` (a batch
    has one tenant): PostgreSQL plans a row-value ``IN`` of a thousand pairs as as many
    ORed conditions, ~100 ms a query, and a plain ``IN`` as one array comparison."""
    grouped: dict[Any, list[Any]] = {}
    for a, b in pairs:
        grouped.setdefault(a, []).append(b)
    return or_(*(and_(first == a, second.in_(sorted(bs))) for a, bs in sorted(grouped.items())))
