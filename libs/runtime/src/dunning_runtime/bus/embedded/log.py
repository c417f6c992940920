"""The embedded log itself: topics, appends, offsets and retention in one SQLite file."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from dunning_runtime.bus.embedded.group import EmbeddedConsumer
from dunning_runtime.bus.embedded.sqlite import (
    SCHEMA,
    begin,
    connect,
    now_ms,
    rollback,
    shielded,
)
from dunning_runtime.bus.port import (
    OutgoingMessage,
    TopicPartition,
    partition_for,
    with_dead_letter_topics,
)

log = logging.getLogger(__name__)


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
        self._conn = await connect(self.path)
        try:
            await self._conn.executescript(SCHEMA)
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
        await shielded(
            self._create_topics({self.physical(t) for t in with_dead_letter_topics(topics)})
        )

    async def _create_topics(self, names: set[str]) -> None:
        async with self._write_lock:
            await begin(self.conn, self._closing)
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
                await rollback(self.conn)
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
        await shielded(self._append(placed))

    async def _append(self, placed: list[tuple[str, int, OutgoingMessage]]) -> None:
        now = now_ms()
        async with self._write_lock:
            if self._conn is None:
                raise RuntimeError("the embedded bus is closed")
            await begin(self.conn, self._closing)
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
                await rollback(self.conn)
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
        cutoff_ms = now_ms() - int(self.retention_hours * 3_600_000)
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
                    await begin(self.conn, self._closing)
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
                        await rollback(self.conn)
                        raise
                deleted += count
                if count < end - start:
                    break  # younger records from here on: nothing further is due
                start = end
        return deleted
