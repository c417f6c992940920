"""Is the process that holds a claim still alive? Asked of the system, not of a clock.

A service instance claims things for a while: the outbox relay's lease, an
Idempotency-Key while its request runs. When the instance dies (SIGKILL, OOM, a
node lost) nobody releases them. A wall-clock timeout would hold them for its
whole length after the crash (the relay lease stalled every event for 15 s, a
key answered "in use" for a minute), so each instance holds a lock that the
system itself releases when the process is gone, and a claim names its owner by
the instance id:

* PostgreSQL: a session-level advisory lock on a connection kept for the
  instance's life. The server ends the session, and the lock, when the process's
  socket closes, which the kernel does at once for a dead process.
* SQLite (embedded, one machine): an exclusive ``flock`` on a file beside the
  database. The kernel drops it when the process exits.

``alive(owner)`` tries the owner's lock without waiting: taken by someone means
alive; free means the owner is gone.

If an instance loses its own lock while running (its PostgreSQL connection
broke), others may see it as dead for a moment and take over what it holds: a
relay lease taken over publishes at least once (consumers' inboxes see to
duplicates), a key taken over runs the request again (the resource's own id keeps
it from being applied twice). The lock is taken again on the next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from dunning_runtime.db import Database

log = logging.getLogger(__name__)

#: The first key of our advisory locks: keeps them apart from the account locks
#: (``dunning_runtime.locks``), which use the one-key form.
_LOCK_CLASS = 0x64756E  # "dun"


#: How often an instance checks that it still holds its own lock.
CHECK_INTERVAL_S = 5.0


def _lock_key(instance_id: str) -> int:
    """A signed 32-bit key for ``instance_id``; ids are random, so collisions are 1 in 2^32."""
    return int.from_bytes(hashlib.sha256(instance_id.encode()).digest()[:4], "big", signed=True)


class Liveness:
    """This instance's lock, and a way to ask whether another instance's is still held."""

    def __init__(self, database: Database, service: str) -> None:
        self.database = database
        self.service = service
        #: Names this process in the claims it makes; new at every start.
        self.instance_id = uuid.uuid4().hex
        self._connection: AsyncConnection | None = None
        self._file: int | None = None
        self._directory = _lock_directory(database)

    async def start(self) -> None:
        """Take this instance's lock; call before claiming anything."""
        if self._directory is not None:
            self._directory.mkdir(parents=True, exist_ok=True)
            path = self._lock_path(self.instance_id)
            self._file = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            await self._hold_advisory_lock()

    async def keep(self, interval_s: float = CHECK_INTERVAL_S) -> None:
        """Check the lock every ``interval_s`` for as long as the instance runs (a
        supervised task)."""
        while True:
            await asyncio.sleep(interval_s)
            await self.check()

    async def check(self) -> None:
        """Take the lock again if the connection holding it broke (PostgreSQL)."""
        if self._directory is not None:
            return
        try:
            assert self._connection is not None
            await self._connection.execute(text("SELECT 1"))
        except Exception:
            log.warning("%s: the liveness lock's connection broke; taking it again", self.service)
            await self._drop_connection()
            await self._hold_advisory_lock()

    async def alive(self, owner: str) -> bool:
        """Whether the instance ``owner`` still runs (this one always does)."""
        if owner == self.instance_id:
            return True
        if self._directory is not None:
            return await asyncio.to_thread(self._file_held, owner)
        key = _lock_key(owner)
        async with self.database.engine.connect() as conn:
            free = bool(
                (
                    await conn.execute(
                        text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": _LOCK_CLASS, "k": key}
                    )
                ).scalar()
            )
            if free:
                await conn.execute(
                    text("SELECT pg_advisory_unlock(:c, :k)"), {"c": _LOCK_CLASS, "k": key}
                )
            await conn.commit()
        return not free

    async def close(self) -> None:
        """Release the lock: this instance is going away."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._lock_path(self.instance_id).unlink()
            os.close(self._file)
            self._file = None
        await self._drop_connection()

    # -- PostgreSQL ---------------------------------------------------------------------

    async def _hold_advisory_lock(self) -> None:
        conn = await self.database.engine.connect()
        try:
            # Autocommit: the session keeps the lock without an open transaction.
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(
                text("SELECT pg_advisory_lock(:c, :k)"),
                {"c": _LOCK_CLASS, "k": _lock_key(self.instance_id)},
            )
        except BaseException:
            await conn.close()
            raise
        self._connection = conn

    async def _drop_connection(self) -> None:
        if self._connection is not None:
            conn, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await conn.invalidate()  # never back into the pool, lock and all
            with contextlib.suppress(Exception):
                await conn.close()

    # -- SQLite -------------------------------------------------------------------------

    def _lock_path(self, instance_id: str) -> Path:
        assert self._directory is not None
        return self._directory / f"{self.service}.{instance_id}.lock"

    def _file_held(self, owner: str) -> bool:
        path = self._lock_path(owner)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            with contextlib.suppress(OSError):
                path.unlink()  # the owner is gone; so is its file
            return False
        finally:
            os.close(fd)


def _lock_directory(database: Database) -> Path | None:
    """Where SQLite instances keep their lock files (beside the database); None on
    PostgreSQL. An in-memory database has one process by definition: a temp folder."""
    if not database.is_sqlite:
        return None
    path = make_url(database.url).database
    if not path or path == ":memory:":
        import tempfile

        return Path(tempfile.gettempdir()) / "dunning-liveness"
    return Path(path).parent / "instances"
