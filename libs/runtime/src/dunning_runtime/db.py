"""The store: SQLAlchemy 2 async on SQLite (aiosqlite) or PostgreSQL (asyncpg).

One code path for both. On PostgreSQL each service keeps its tables in its own
schema (principle 1); on SQLite each service has its own file.
"""

from __future__ import annotations

import contextlib
import ssl as ssl_
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Integer, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from dunning_runtime.settings import ServiceSettings

#: A table's sequence id column type: BIGINT on PostgreSQL, INTEGER on SQLite, where only
#: an ``INTEGER PRIMARY KEY`` is the autoincrementing rowid (a BIGINT key would stay null).
SequenceId = BigInteger().with_variant(Integer(), "sqlite")


def utc(instant: datetime | None) -> datetime | None:
    """``instant`` as an aware UTC datetime: SQLite hands stored datetimes back naive,
    and every instant the services store is UTC."""
    if instant is None or instant.tzinfo is not None:
        return instant
    return instant.replace(tzinfo=UTC)


def on_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Call ``callback`` once the session's transaction commits (never on a rollback): a
    side effect of a change, such as waking a worker or counting it, happens only when
    the change is there to see, and a retried chunk does it once."""
    event.listen(session.sync_session, "after_commit", lambda _session: callback(), once=True)


class SchemaNotMigrated(RuntimeError):
    """The service's tables are not at its newest revision and it may not migrate them."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"the tables of {where} are not at the newest revision and DUNNING_MIGRATE is "
            "false: run the service's migrate command (the migration Job) first"
        )


class Database:
    """An engine, its session factory and the service's schema."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        echo: bool = False,
        ssl: ssl_.SSLContext | bool | None = None,
    ) -> None:
        self.url = url
        self.schema = schema
        self.is_sqlite = url.startswith("sqlite")
        self.engine: AsyncEngine = _create_engine(url, schema=schema, echo=echo, ssl=ssl)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Database:
        """The service's database: its URL, its schema and ``DUNNING_DATABASE_SSL_*``."""
        from dunning_runtime.tls import database_ssl

        return cls(
            settings.effective_database_url,
            schema=settings.effective_schema,
            ssl=database_ssl(settings),
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def migrate(self, versions: Path, *, apply: bool = True) -> None:
        """Bring the service's tables to the newest Alembic revision in ``versions``.

        Without ``apply`` (``DUNNING_MIGRATE=false``: a migration Job runs them, so that
        replicas never race on them) only check, and raise ``SchemaNotMigrated`` unless
        the tables are at that revision."""
        from dunning_runtime.migrations import pending, upgrade

        if not apply:
            async with self.engine.connect() as conn:
                if await conn.run_sync(pending, versions, self.schema):
                    raise SchemaNotMigrated(self.schema or self.url)
            return
        if self.schema:
            async with self.engine.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade, versions, self.schema)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


#: Connections a PostgreSQL engine holds at most (and keeps once opened).
POOL_CONNECTIONS = 20


def _create_engine(
    url: str, *, schema: str | None, echo: bool, ssl: ssl_.SSLContext | bool | None
) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 60}
    else:
        # At most POOL_CONNECTIONS at once, as before (10 kept plus 10 overflow), but all
        # of them kept: an overflow connection was closed on its return, so every burst
        # of more than 10 concurrent requests opened new ones (a connect, TLS and the
        # driver's set-up: about 7 ms of CPU each, against 1.4 ms for a pooled checkout).
        kwargs.update(pool_size=POOL_CONNECTIONS, max_overflow=0, pool_pre_ping=True)
        connect_args: dict[str, Any] = {}
        if schema:
            connect_args["server_settings"] = {"search_path": schema}
        if ssl is not None:
            connect_args["ssl"] = ssl
        kwargs["connect_args"] = connect_args
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; we take the write
        # lock when the transaction starts so two writers never deadlock.
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        # A connection invalidated by a cancellation is "terminated": a graceful close,
        # then, if that is cancelled too, aiosqlite's stop(). The graceful close queues a
        # stop of its own, which the worker thread, gone after the first, never answers:
        # the task waits forever and the event loop cannot close. A plain close is enough,
        # after a rollback: see _sqlite_close.
        engine.dialect.do_terminate = _sqlite_close  # type: ignore[method-assign,assignment]
        engine.dialect.do_close = _sqlite_close  # type: ignore[method-assign,assignment]
    return engine


def _sqlite_close(dbapi_conn: Any) -> None:
    """Roll back, then close. A connection closed while a cancelled statement still has
    its cursor open is only half-closed by sqlite3 (a "zombie" until that statement is
    finalized) and would keep its transaction, so the write lock, for every other
    connection to wait on for the whole busy timeout."""
    with contextlib.suppress(Exception):
        dbapi_conn.rollback()
    dbapi_conn.close()


#: How long a SQLite statement waits for another connection's write lock before it fails:
#: long enough to ride out any transaction of ours, so "busy" means something is wrong.
SQLITE_BUSY_TIMEOUT_MS = 60_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
