"""A consumer group member on the embedded log: heartbeats, leases on partitions, polls
and commits."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiosqlite

from dunning_runtime.bus.embedded.sqlite import (
    begin,
    connect,
    headers_of,
    now_ms,
    rollback,
    shielded,
)
from dunning_runtime.bus.port import (
    BatchGate,
    Record,
    TopicPartition,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from dunning_runtime.bus.embedded.log import EmbeddedBus


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
        self._conn = await connect(self.bus.path)
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
        await begin(self.conn, closing or self._closing)
        try:
            for sql, params in statements:
                await self.conn.execute(sql, params)
            await self.conn.execute("COMMIT")
        except BaseException:
            await rollback(self.conn)
            raise

    async def _rebalance(self) -> None:
        """Heartbeat, then claim the partitions due to us and release the others."""
        await shielded(self._rebalance_now())

    async def _rebalance_now(self) -> None:
        async with self._lock:
            if self._conn is None:
                return  # stopped while this waited for the lock
            now = now_ms()
            timeout_ms = int(self.bus.session_timeout_s * 1000)
            await begin(self.conn, self._closing)
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
                await rollback(self.conn)
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
                        headers=headers_of(headers),
                        timestamp_ms=ts,
                    )
                )
                self._positions[(topic, partition)] = offset + 1
        return records

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store next offsets for partitions whose lease this member still holds."""
        if offsets:
            await shielded(self._commit(offsets))

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
