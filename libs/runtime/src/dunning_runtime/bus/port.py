"""The bus port: what services need from an event log, whichever backend is active.

Two adapters implement it: Apache Kafka (``kafka.py``) and the embedded durable
log on SQLite (``embedded.py``). Both give the same guarantees:

* a message's partition follows from its key (Kafka's murmur2 partitioner in
  both), so one account's events stay in order;
* ``publish`` returns only when every message is durably stored, in order;
* consumer groups share partitions between members; a member reads only the
  partitions it owns and ``commit`` silently drops offsets of partitions it no
  longer owns (rebalance safety); a partition is never given up while a batch of
  it is in hand (``BusConsumer.batch``);
* a group's physical name carries the topic prefix, like its topics, so
  environments sharing a broker never share a group;
* delivery is at-least-once: the inbox makes consumers idempotent.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka.partitioner import murmur2

from dunning_events.topics import DEAD_LETTER_SUFFIX, dead_letter_topic

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to publish on a (logical, unprefixed) topic."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Record:
    """A message read from a partition of a (logical, unprefixed) topic."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: Headers
    timestamp_ms: int

    def header(self, name: str) -> str | None:
        """The first header called ``name``, decoded as UTF-8."""
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None


TopicPartition = tuple[str, int]


class BusConsumer(Protocol):
    """One member of a consumer group."""

    async def start(self) -> None:
        """Join the group."""
        ...

    async def stop(self) -> None:
        """Leave the group, releasing its partitions."""
        ...

    async def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        """Next records from owned, unpaused partitions, in offset order within each."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the next offset to read per partition; skips partitions no longer owned."""
        ...

    def assignment(self) -> set[TopicPartition]:
        """Partitions this member owns now."""
        ...

    def batch(self, partition: TopicPartition) -> AbstractAsyncContextManager[bool]:
        """Hold ``partition`` while a batch of it is processed and committed.

        Yields whether the partition is still owned (if not, drop the batch: the new
        owner reads it again). A rebalance waits for held partitions before it gives
        them up, so a new owner never overlaps the batch in hand.
        """
        ...

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        """Stop returning records of ``partitions`` from ``poll`` until resumed."""
        ...

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        """Undo ``pause``."""
        ...

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Make the next ``poll`` of each owned partition start at the offset given."""
        ...


class BatchGate:
    """Which partitions have a batch in hand; a rebalance waits for them (adapters' helper)."""

    def __init__(self) -> None:
        self._held: Counter[TopicPartition] = Counter()
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, partition: TopicPartition) -> AsyncIterator[None]:
        """Mark ``partition`` busy for the duration of the block."""
        self._held[partition] += 1
        try:
            yield
        finally:
            self._held[partition] -= 1
            if self._held[partition] <= 0:
                del self._held[partition]
                async with self._changed:
                    self._changed.notify_all()

    def busy(self, partition: TopicPartition) -> bool:
        """Whether a batch of ``partition`` is in hand."""
        return self._held[partition] > 0 if partition in self._held else False

    async def wait_free(self, partitions: Collection[TopicPartition]) -> None:
        """Return once no batch of ``partitions`` is in hand."""
        async with self._changed:
            await self._changed.wait_for(lambda: not any(self.busy(p) for p in partitions))


class Bus(Protocol):
    """A partitioned, durable event log with consumer groups."""

    async def start(self) -> None:
        """Connect."""
        ...

    async def close(self) -> None:
        """Disconnect, flushing pending publishes."""
        ...

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create the topics (and their dead-letter topics) if missing."""
        ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Store every message durably; per-key order is the order given."""
        ...

    def consumer(self, group: str, topics: Sequence[str]) -> BusConsumer:
        """A new member of consumer ``group`` subscribed to ``topics``."""
        ...

    async def ping(self) -> None:
        """Raise if the backend cannot be reached (used by /readyz)."""
        ...

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Next offset per partition of a logical topic."""
        ...

    async def committed_offsets(
        self, group: str, topics: Sequence[str]
    ) -> dict[TopicPartition, int]:
        """The next offset ``group`` committed per partition of ``topics`` (logical names);
        partitions it never committed on are left out. With ``end_offsets``, the lag."""
        ...

    async def enforce_retention(self) -> int:
        """Drop records past the retention limits that no group still needs; returns how many.

        The embedded log trims by age and size; Kafka returns 0 (the broker's own
        retention applies).
        """
        ...


def with_dead_letter_topics(topics: Sequence[str]) -> set[str]:
    """``topics`` and the dead-letter topic of each (a dead-letter topic has none)."""
    return set(topics) | {
        dead_letter_topic(t) for t in topics if not t.endswith(DEAD_LETTER_SUFFIX)
    }


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), so both backends place a key alike."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
