"""The bus port: what services need from an event log, whichever backend is active.

Two adapters implement it: Apache Kafka (``kafka.py``) and the embedded durable
log on SQLite (``embedded.py``). Both give the same guarantees:

* a message's partition follows from its key (Kafka's murmur2 partitioner in
  both), so one account's events stay in order;
* ``publish`` returns only when every message is durably stored, in order;
* consumer groups share partitions between members; a member reads only the
  partitions it owns and ``commit`` silently drops offsets of partitions it no
  longer owns (rebalance safety);
* delivery is at-least-once: the inbox makes consumers idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
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

    #: Held while a batch is processed; partitions are given up only when it is free.
    processing: asyncio.Lock

    async def start(self) -> None:
        """Join the group."""
        ...

    async def stop(self) -> None:
        """Leave the group, releasing its partitions."""
        ...

    async def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        """Next records from owned partitions, in offset order within each partition."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the next offset to read per partition; skips partitions no longer owned."""
        ...

    def assignment(self) -> set[TopicPartition]:
        """Partitions this member owns now."""
        ...


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


def with_dead_letter_topics(topics: Sequence[str]) -> set[str]:
    """``topics`` and the dead-letter topic of each (a dead-letter topic has none)."""
    return set(topics) | {
        dead_letter_topic(t) for t in topics if not t.endswith(DEAD_LETTER_SUFFIX)
    }


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), so both backends place a key alike."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
