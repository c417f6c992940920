"""The SQLite plumbing of the embedded log: its schema, connections, and a write lock
taken in short slices (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)


SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partition_heads (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partition_owners (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
"""


async def rollback(conn: aiosqlite.Connection) -> None:
    # The transaction may already be gone (the error ended it); the original error matters.
    with contextlib.suppress(sqlite3.OperationalError):
        await conn.execute("ROLLBACK")


def now_ms() -> int:
    return int(time.time() * 1000)


#: How long one attempt at SQLite's write lock waits (the connection's busy timeout).
LOCK_SLICE_MS = 100
#: How long a writer keeps trying before the "database is locked" error is raised.
LOCK_WAIT_S = 60.0


async def shielded(work: Awaitable[None]) -> None:
    """Run ``work`` to its end even if the caller is cancelled, so a transaction is never
    cut in half while aiosqlite's thread goes on with it. Its outcome is always
    retrieved: a caller that was cancelled no longer waits for it."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)
    await asyncio.shield(task)


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("a write finished after its caller left: %s", task.exception())


async def begin(conn: aiosqlite.Connection, closing: Callable[[], bool]) -> None:
    """``BEGIN IMMEDIATE``, retried in short slices until it succeeds or we are closing."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            await conn.execute("BEGIN IMMEDIATE")
            return
        except asyncio.CancelledError:
            # aiosqlite's thread runs the BEGIN whether or not we still wait for it: undo
            # it, or the connection keeps the log's write lock and every writer waits.
            await asyncio.shield(rollback(conn))
            raise
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or closing() or time.monotonic() > deadline:
                raise


def headers_of(text: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode("latin-1")) for k, v in json.loads(text)]


async def connect(path: Path) -> aiosqlite.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN ourselves, so writers take the lock up front.
    conn = await aiosqlite.connect(str(path), isolation_level=None, timeout=60)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged publish survives an OS crash, not only a process crash.
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute(f"PRAGMA busy_timeout={LOCK_SLICE_MS}")
    except BaseException:
        # A stop that cancels us here would otherwise leave the connection's worker
        # thread (not a daemon) running: the process could not exit.
        await asyncio.shield(conn.close())
        raise
    return conn
