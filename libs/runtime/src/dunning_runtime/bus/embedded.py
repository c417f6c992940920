"""The embedded durable log: Kafka's semantics in one SQLite file.

It lets the whole platform run on one machine with no server to install, and
several processes can share the file at once (SQLite WAL mode).

Design notes:

* Appends take SQLite's write lock (``BEGIN IMMEDIATE``) and assign offsets
  from ``partition_heads`` inside that transaction, so offsets become visible
  in commit order: a reader that has seen offset N has seen every offset below
  it. That avoids the "late commit" gap that SQL logs read by a sequence number
  suffer from (Watermill needed an xid8 snapshot filter on PostgreSQL for it).
* Consumer groups: members heartbeat into ``group_members``; every member
  derives the same assignment from the sorted list of live members; a member
  claims a partition through a lease in ``partition_owners`` only when the
  previous owner released it or its lease expired, so one partition is never
  read by two live members at once and per-key order holds across rebalances.
* ``commit`` updates the group's offset only while the member still holds the
  partition's lease (checked in the same statement).
* A poll reads every owned, unpaused partition in one statement, a fair share of
  the batch from each, so a backlog in one partition does not starve the others.
* Retention (``enforce_retention``) deletes records older than the age limit or
  beyond the size limit of their partition, never at or after the lowest offset a
  group still needs there.
* Writers wait for SQLite's write lock in short slices (``_begin``), so closing
  the log never waits behind another process's transaction for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from dunning_runtime.bus.port import (
    BatchGate,
    OutgoingMessage,
    Record,
    TopicPartition,
    partition_for,
    with_dead_letter_topics,
)

log = logging.getLogger(__name__)

_SCHEMA = """
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


async def _rollback(conn: aiosqlite.Connection) -> None:
    # The transaction may already be gone (the error ended it); the original error matters.
    with contextlib.suppress(sqlite3.OperationalError):
        await conn.execute("ROLLBACK")


def _now_ms() -> int:
    return int(time.time() * 1000)


#: How long one attempt at SQLite's write lock waits (the connection's busy timeout).
_LOCK_SLICE_MS = 100
#: How long a writer keeps trying before the "database is locked" error is raised.
_LOCK_WAIT_S = 60.0


async def _shielded(work: Awaitable[None]) -> None:
    """Run ``work`` to its end even if the caller is cancelled, so a transaction is never
    cut in half while aiosqlite's thread goes on with it. Its outcome is always
    retrieved: a caller that was cancelled no longer waits for it."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)
    await asyncio.shield(task)


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("a write finished after its caller left: %s", task.exception())


async def _begin(conn: aiosqlite.Connection, closing: Callable[[], bool]) -> None:
    """``BEGIN IMMEDIATE``, retried in short slices until it succeeds or we are closing."""
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            await conn.execute("BEGIN IMMEDIATE")
            return
        except asyncio.CancelledError:
            # aiosqlite's thread runs the BEGIN whether or not we still wait for it: undo
            # it, or the connection keeps the log's write lock and every writer waits.
            await asyncio.shield(_rollback(conn))
            raise
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or closing() or time.monotonic() > deadline:
                raise


def _headers(text: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode("latin-1")) for k, v in json.loads(text)]


async def _connect(path: Path) -> aiosqlite.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN ourselves, so writers take the lock up front.
    conn = await aiosqlite.connect(str(path), isolation_level=None, timeout=60)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged publish survives an OS crash, not only a process crash.
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute(f"PRAGMA busy_timeout={_LOCK_SLICE_MS}")
    except BaseException:
        # A stop that cancels us here would otherwise leave the connection's worker
        # thread (not a daemon) running: the process could not exit.
        await asyncio.shield(conn.close())
        raise
    return conn


class EmbeddedBus:
    """The bus port on a SQLite file shared by every process of the stack."""

    def __init__(
        self,
        path: Path,
        *,
        partitions: int = 8,
        topic_prefix: str = "",
        session_timeout_s: float = 10.0,
        retention_hours: float = 168.0,
        max_records: int = 1_000_000,
    ) -> None:
        self.path = path
        self.partitions = partitions
        self.topic_prefix = topic_prefix
        self.session_timeout_s = session_timeout_s
        self.retention_hours = retention_hours
        self.max_records = max_records
        self.closing = False
        self._conn: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._partition_counts: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Open the log file and create its tables."""
        self.closing = False
        self._conn = await _connect(self.path)
        try:
            await self._conn.executescript(_SCHEMA)
        except BaseException:
            await self._conn.close()
            self._conn = None
            raise

    async def close(self) -> None:
        """Close the log file once in-flight appends have finished.

        Closing under the write lock matters: an append still running (it is
        shielded from cancellation) would otherwise wait forever on a closed
        aiosqlite connection.
        """
        self.closing = True  # a writer waiting for SQLite's lock gives up within a slice
        if self._conn is not None:
            async with self._write_lock:
                if self._conn is not None:
                    await self._conn.close()
                    self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("the embedded bus is not started")
        return self._conn

    async def ping(self) -> None:
        """Raise if the log file cannot be read."""
        await (await self.conn.execute("SELECT 1")).close()

    # -- topics --------------------------------------------------------------

    def physical(self, topic: str) -> str:
        """The stored name of a logical topic."""
        return self.topic_prefix + topic

    def physical_group(self, group: str) -> str:
        """The stored name of a consumer group: prefixed like the topics."""
        return self.topic_prefix + group

    def _closing(self) -> bool:
        return self.closing

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create topics and their dead-letter topics with the configured partition count."""
        # Shielded like every write: a cancelled caller must not cut the transaction.
        await _shielded(
            self._create_topics({self.physical(t) for t in with_dead_letter_topics(topics)})
        )

    async def _create_topics(self, names: set[str]) -> None:
        async with self._write_lock:
            await _begin(self.conn, self._closing)
            try:
                for name in sorted(names):
                    await self.conn.execute(
                        "INSERT OR IGNORE INTO topics (name, partitions) VALUES (?, ?)",
                        (name, self.partitions),
                    )
                    await self.conn.executemany(
                        "INSERT OR IGNORE INTO partition_heads (topic, partition, next_offset) "
                        "VALUES (?, ?, 0)",
                        [(name, p) for p in range(self.partitions)],
                    )
                await self.conn.execute("COMMIT")
            except BaseException:
                await _rollback(self.conn)
                raise

    async def partition_count(self, physical_topic: str) -> int:
        """Partitions of a stored topic (created with the default count if new)."""
        if physical_topic not in self._partition_counts:
            cur = await self.conn.execute(
                "SELECT partitions FROM topics WHERE name = ?", (physical_topic,)
            )
            row = await cur.fetchone()
            await cur.close()
            if row is None:
                # Like Kafka's auto.create.topics.enable: publishing creates the topic.
                await self.ensure_topics([physical_topic.removeprefix(self.topic_prefix)])
                return await self.partition_count(physical_topic)
            self._partition_counts[physical_topic] = int(row[0])
        return self._partition_counts[physical_topic]

    # -- publishing ----------------------------------------------------------

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Append every message in one transaction, in the order given."""
        if not messages:
            return
        placed: list[tuple[str, int, OutgoingMessage]] = []
        for msg in messages:
            topic = self.physical(msg.topic)
            placed.append((topic, partition_for(msg.key, await self.partition_count(topic)), msg))
        # Shielded: a cancelled caller must not cut a transaction in half, because
        # aiosqlite's thread would go on with it while we tried to roll back.
        await _shielded(self._append(placed))

    async def _append(self, placed: list[tuple[str, int, OutgoingMessage]]) -> None:
        now = _now_ms()
        async with self._write_lock:
            if self._conn is None:
                raise RuntimeError("the embedded bus is closed")
            await _begin(self.conn, self._closing)
            try:
                heads: dict[tuple[str, int], int] = {}
                rows = []
                for topic, partition, msg in placed:
                    if (topic, partition) not in heads:
                        cur = await self.conn.execute(
                            "SELECT next_offset FROM partition_heads "
                            "WHERE topic = ? AND partition = ?",
                            (topic, partition),
                        )
                        row = await cur.fetchone()
                        await cur.close()
                        heads[(topic, partition)] = int(row[0]) if row else 0
                    offset = heads[(topic, partition)]
                    heads[(topic, partition)] = offset + 1
                    headers = json.dumps([[k, v.decode("latin-1")] for k, v in msg.headers])
                    rows.append((topic, partition, offset, msg.key, msg.value, headers, now))
                await self.conn.executemany(
                    'INSERT INTO records (topic, partition, "offset", key, value, headers, '
                    "timestamp_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                await self.conn.executemany(
                    "INSERT INTO partition_heads (topic, partition, next_offset) "
                    "VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                    "DO UPDATE SET next_offset = excluded.next_offset",
                    [(t, p, o) for (t, p), o in heads.items()],
                )
                await self.conn.execute("COMMIT")
            except BaseException:
                await _rollback(self.conn)
                raise

    # -- consuming -----------------------------------------------------------

    def consumer(self, group: str, topics: Sequence[str]) -> EmbeddedConsumer:
        """A new member of ``group``; it opens its own connection to the log."""
        return EmbeddedConsumer(
            self, self.physical_group(group), [self.physical(t) for t in topics]
        )

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Next offset per partition of a logical topic (for lag and tests)."""
        cur = await self.conn.execute(
            "SELECT partition, next_offset FROM partition_heads WHERE topic = ?",
            (self.physical(topic),),
        )
        rows = await cur.fetchall()
        await cur.close()
        return {int(p): int(o) for p, o in rows}

    async def committed_offsets(
        self, group: str, topics: Sequence[str]
    ) -> dict[TopicPartition, int]:
        """The next offset ``group`` committed per partition of ``topics`` (for lag)."""
        if not topics:
            return {}
        names = [self.physical(t) for t in topics]
        cur = await self.conn.execute(
            "SELECT topic, partition, next_offset FROM group_offsets WHERE group_id = ? "
            f"AND topic IN ({', '.join('?' for _ in names)})",
            (self.physical_group(group), *names),
        )
        rows = await cur.fetchall()
        await cur.close()
        return {(t.removeprefix(self.topic_prefix), int(p)): int(o) for t, p, o in rows}

    async def enforce_retention(self) -> int:
        """Delete records older than ``retention_hours`` or beyond ``max_records`` per partition.

        Never deletes at or after the lowest offset a group still needs on that
        partition: a group known on the topic (an offset or a lease there) that has
        not committed on the partition holds all of it. Returns how many were deleted.
        """
        cutoff_ms = _now_ms() - int(self.retention_hours * 3_600_000)
        cur = await self.conn.execute(
            "SELECT h.topic, h.partition, h.next_offset, "
            "(SELECT MIN(COALESCE(o.next_offset, 0)) FROM "
            "  (SELECT group_id FROM group_offsets WHERE topic = h.topic "
            "   UNION SELECT group_id FROM partition_owners WHERE topic = h.topic) AS g "
            "  LEFT JOIN group_offsets AS o ON o.group_id = g.group_id "
            "  AND o.topic = h.topic AND o.partition = h.partition) "
            "FROM partition_heads AS h"
        )
        heads = list(await cur.fetchall())
        await cur.close()
        deleted = 0
        for topic, partition, head, needed in heads:
            # No group on the topic: nothing holds it, age and size alone decide (as Kafka).
            floor = int(head) if needed is None else int(needed)
            by_size = int(head) - self.max_records
            cur = await self.conn.execute(
                'SELECT MIN("offset") FROM records WHERE topic = ? AND partition = ?',
                (topic, partition),
            )
            row = await cur.fetchone()
            await cur.close()
            start = floor if row is None or row[0] is None else int(row[0])
            # Slices keep each write transaction (and so other writers' wait) short.
            while start < floor:
                end = min(start + 20_000, floor)
                async with self._write_lock:
                    await _begin(self.conn, self._closing)
                    try:
                        cur = await self.conn.execute(
                            "DELETE FROM records WHERE topic = ? AND partition = ? "
                            'AND "offset" >= ? AND "offset" < ? '
                            'AND (timestamp_ms < ? OR "offset" < ?)',
                            (topic, partition, start, end, cutoff_ms, by_size),
                        )
                        count = max(cur.rowcount, 0)
                        await cur.close()
                        await self.conn.execute("COMMIT")
                    except BaseException:
                        await _rollback(self.conn)
                        raise
                deleted += count
                if count < end - start:
                    break  # younger records from here on: nothing further is due
                start = end
        return deleted


class EmbeddedConsumer:
    """One member of a consumer group on the embedded log."""

    def __init__(self, bus: EmbeddedBus, group: str, topics: list[str]) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        self.member_id = f"{uuid.uuid4()}"
        self._conn: aiosqlite.Connection | None = None
        self._owned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._paused: set[TopicPartition] = set()
        self._next_start = 0
        self._stopping = False
        # Partitions with a batch in hand are released only once it is done, so a new
        # owner never overlaps it.
        self._gate = BatchGate()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("the consumer is not started")
        return self._conn

    async def start(self) -> None:
        """Join the group and start heartbeating."""
        self._stopping = False
        self._conn = await _connect(self.bus.path)
        try:
            await self.bus.ensure_topics(
                [t.removeprefix(self.bus.topic_prefix) for t in self.topics]
            )
            await self._rebalance()
        except BaseException:
            # A start cancelled here (a stop right after start) leaves the shielded
            # rebalance running inside its write transaction: close only once it is done.
            # Closed under it, the connection lived on in SQLite as long as that
            # transaction's cursor did, holding the log's write lock, and every writer of
            # every process waited on it (a restart's start hung for a minute).
            await asyncio.shield(self._close_when_idle())
            raise
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())

    async def stop(self) -> None:
        """Leave the group and release every partition at once.

        Prompt whatever the state: a write waiting for SQLite's lock gives up within a
        slice, and if leaving fails the leases simply expire after the session timeout.
        """
        self._stopping = True
        if self._heartbeat_task:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
            self._heartbeat_task = None
        if self._conn is not None:
            # Under the lock: a shielded heartbeat or commit may still be writing.
            async with self._lock:
                try:
                    await self._write(
                        [
                            (
                                "DELETE FROM partition_owners WHERE group_id = ? AND member_id = ?",
                                (self.group, self.member_id),
                            ),
                            (
                                "DELETE FROM group_members WHERE group_id = ? AND member_id = ?",
                                (self.group, self.member_id),
                            ),
                        ],
                        closing=lambda: True,
                    )
                except sqlite3.Error as exc:
                    log.warning("leaving group %s failed (leases will expire): %s", self.group, exc)
                finally:
                    await self._close_conn()
        self._owned.clear()
        self._paused.clear()

    async def _close_when_idle(self) -> None:
        async with self._lock:
            await self._close_conn()

    async def _close_conn(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    def _closing(self) -> bool:
        return self._stopping or self.bus.closing

    @asynccontextmanager
    async def batch(self, partition: TopicPartition) -> AsyncIterator[bool]:
        """Hold ``partition`` while its batch is processed; yields whether it is still ours."""
        async with self._gate.hold(partition):
            yield (self.bus.physical(partition[0]), partition[1]) in self._owned

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        """Skip ``partitions`` in ``poll`` until resumed."""
        self._paused.update((self.bus.physical(t), p) for t, p in partitions)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        """Read ``partitions`` again."""
        self._paused.difference_update((self.bus.physical(t), p) for t, p in partitions)

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Next ``poll`` of each owned partition starts at the offset given."""
        async with self._lock:
            for (topic, partition), offset in offsets.items():
                tp = (self.bus.physical(topic), partition)
                if tp in self._owned:
                    self._positions[tp] = offset

    def assignment(self) -> set[TopicPartition]:
        """Partitions this member holds a lease on."""
        return {(t.removeprefix(self.bus.topic_prefix), p) for t, p in self._owned}

    async def _heartbeat_loop(self) -> None:
        # Heartbeats run beside the handler, so a slow batch does not cost the lease.
        interval = self.bus.session_timeout_s / 5
        while True:
            await asyncio.sleep(interval)
            try:
                await self._rebalance()
            except Exception:
                log.exception("embedded consumer heartbeat failed")

    async def _write(
        self,
        statements: list[tuple[str, tuple[Any, ...]]],
        closing: Callable[[], bool] | None = None,
    ) -> None:
        await _begin(self.conn, closing or self._closing)
        try:
            for sql, params in statements:
                await self.conn.execute(sql, params)
            await self.conn.execute("COMMIT")
        except BaseException:
            await _rollback(self.conn)
            raise

    async def _rebalance(self) -> None:
        """Heartbeat, then claim the partitions due to us and release the others."""
        await _shielded(self._rebalance_now())

    async def _rebalance_now(self) -> None:
        async with self._lock:
            if self._conn is None:
                return  # stopped while this waited for the lock
            now = _now_ms()
            timeout_ms = int(self.bus.session_timeout_s * 1000)
            await _begin(self.conn, self._closing)
            try:
                await self.conn.execute(
                    "INSERT INTO group_members (group_id, member_id, heartbeat_ms) "
                    "VALUES (?, ?, ?) ON CONFLICT (group_id, member_id) "
                    "DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
                    (self.group, self.member_id, now),
                )
                await self.conn.execute(
                    "DELETE FROM group_members WHERE group_id = ? AND heartbeat_ms < ?",
                    (self.group, now - timeout_ms),
                )
                cur = await self.conn.execute(
                    "SELECT member_id FROM group_members WHERE group_id = ? ORDER BY member_id",
                    (self.group,),
                )
                members = [str(r[0]) for r in await cur.fetchall()]
                await cur.close()
                partitions: list[TopicPartition] = []
                for topic in sorted(self.topics):
                    count = await self._partitions_of(topic)
                    partitions.extend((topic, p) for p in range(count))
                index = members.index(self.member_id)
                desired = {tp for i, tp in enumerate(partitions) if i % len(members) == index}

                # Release what is no longer ours, but never in the middle of its batch.
                releasable = {
                    tp
                    for tp in self._owned - desired
                    if not self._gate.busy((tp[0].removeprefix(self.bus.topic_prefix), tp[1]))
                }
                for topic, partition in releasable:
                    await self.conn.execute(
                        "DELETE FROM partition_owners WHERE group_id = ? AND topic = ? "
                        "AND partition = ? AND member_id = ?",
                        (self.group, topic, partition, self.member_id),
                    )
                kept = (self._owned - desired) - releasable
                owned: set[TopicPartition] = set()
                # Claim free or expired partitions due to us; renew the leases we keep.
                for topic, partition in desired | kept:
                    cur = await self.conn.execute(
                        "INSERT INTO partition_owners "
                        "(group_id, topic, partition, member_id, expires_ms) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_id, topic, partition) DO UPDATE "
                        "SET member_id = excluded.member_id, expires_ms = excluded.expires_ms "
                        "WHERE partition_owners.member_id = excluded.member_id "
                        "OR partition_owners.expires_ms < ?",
                        (self.group, topic, partition, self.member_id, now + timeout_ms, now),
                    )
                    await cur.close()
                    cur = await self.conn.execute(
                        "SELECT member_id FROM partition_owners "
                        "WHERE group_id = ? AND topic = ? AND partition = ?",
                        (self.group, topic, partition),
                    )
                    row = await cur.fetchone()
                    await cur.close()
                    if row and row[0] == self.member_id:
                        owned.add((topic, partition))
                await self.conn.execute("COMMIT")
            except BaseException:
                await _rollback(self.conn)
                raise
            for tp in owned - self._owned:
                self._positions[tp] = await self._committed(tp)
            for tp in self._owned - owned:
                self._positions.pop(tp, None)
            self._owned = owned

    async def _partitions_of(self, topic: str) -> int:
        cur = await self.conn.execute("SELECT partitions FROM topics WHERE name = ?", (topic,))
        row = await cur.fetchone()
        await cur.close()
        return int(row[0]) if row else 0

    async def _committed(self, tp: TopicPartition) -> int:
        cur = await self.conn.execute(
            "SELECT next_offset FROM group_offsets "
            "WHERE group_id = ? AND topic = ? AND partition = ?",
            (self.group, *tp),
        )
        row = await cur.fetchone()
        await cur.close()
        return int(row[0]) if row else 0

    async def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        """Records from owned partitions past this member's position, waiting up to timeout_s."""
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            records = await self._fetch(max_records)
            if records or time.monotonic() >= deadline:
                return records
            # Short, growing sleeps: a new record is seen within ~50 ms without a busy loop.
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.05)

    async def _fetch(self, max_records: int) -> list[Record]:
        """One statement over every owned, unpaused partition, a fair share from each.

        The partitions' order rotates from one fetch to the next, so when the batch is
        full the same partition does not always come first.
        """
        records: list[Record] = []
        async with self._lock:
            readable = sorted(self._owned - self._paused)
            if not readable:
                return records
            start = self._next_start % len(readable)
            readable = readable[start:] + readable[:start]
            self._next_start += 1
            share = max(1, -(-max_records // len(readable)))
            rows: list[Any] = []
            # SQLite allows at most 500 terms in a compound SELECT.
            for first in range(0, len(readable), 200):
                part = readable[first : first + 200]
                sql = " UNION ALL ".join(
                    'SELECT * FROM (SELECT topic, partition, "offset", key, value, headers, '
                    "timestamp_ms FROM records WHERE topic = ? AND partition = ? "
                    'AND "offset" >= ? ORDER BY "offset" LIMIT ?)'
                    for _ in part
                )
                params: list[Any] = []
                for topic, partition in part:
                    params += [topic, partition, self._positions.get((topic, partition), 0), share]
                cur = await self.conn.execute(sql, params)
                rows.extend(await cur.fetchall())
                await cur.close()
            # SQL does not promise the arms' order: put each partition's rows in offset order.
            rank = {tp: i for i, tp in enumerate(readable)}
            rows.sort(key=lambda r: (rank[(r[0], r[1])], r[2]))
            prefix = self.bus.topic_prefix
            for topic, partition, offset, key, value, headers, ts in rows:
                records.append(
                    Record(
                        topic=topic.removeprefix(prefix),
                        partition=partition,
                        offset=offset,
                        key=bytes(key),
                        value=bytes(value),
                        headers=_headers(headers),
                        timestamp_ms=ts,
                    )
                )
                self._positions[(topic, partition)] = offset + 1
        return records

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store next offsets for partitions whose lease this member still holds."""
        if offsets:
            await _shielded(self._commit(offsets))

    async def _commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        async with self._lock:
            if self._conn is None:
                raise RuntimeError("the consumer is stopped")
            statements: list[tuple[str, tuple[Any, ...]]] = []
            for (topic, partition), offset in offsets.items():
                physical = self.bus.physical(topic)
                statements.append(
                    (
                        "INSERT INTO group_offsets (group_id, topic, partition, next_offset) "
                        "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM partition_owners "
                        "WHERE group_id = ? AND topic = ? AND partition = ? AND member_id = ?) "
                        "ON CONFLICT (group_id, topic, partition) "
                        "DO UPDATE SET next_offset = excluded.next_offset",
                        (
                            self.group,
                            physical,
                            partition,
                            offset,
                            self.group,
                            physical,
                            partition,
                            self.member_id,
                        ),
                    )
                )
            await self._write(statements)
