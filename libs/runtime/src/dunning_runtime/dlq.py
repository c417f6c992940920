"""Dead-letter topics: look into one and re-drive it (the mechanism of ``dunning dlq``).

``list_dead_letters`` reads every record of ``TOPIC.dlq``, each with why it was
dead-lettered. ``replay`` publishes the records not replayed yet (or only those named with ``--id``)
to their original topic, with the original headers and without the ``dlq_*`` ones,
then commits its own consumer group (``dunning-dlq-replay``) on the dead-letter topic,
so a second replay does not send them again. With ``--id`` the group moves only past
the records at the front of each partition that were replayed: the others stay for a
later replay (a record replayed twice is applied once, the inbox sees to that).

Consumers apply a replayed event like any other: the inbox notes dead-lettered
events as such, and counts them as new when they come back.

The ``dunning`` command (libs/cli, ``dunning_cli.dlq``) calls these with the services'
own settings (``DUNNING_BUS_URL``, ``DUNNING_TOPIC_PREFIX``, ...) and prints what they
return.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from dunning_events.topics import DEAD_LETTER_SUFFIX, dead_letter_topic
from dunning_runtime.bus.port import Bus, OutgoingMessage, Record, TopicPartition

#: The consumer group that remembers what was replayed, per dead-letter topic.
REPLAY_GROUP = "dunning-dlq-replay"
_DLQ_HEADER_PREFIX = "dlq_"


@dataclass(frozen=True)
class DeadLetter:
    """A record of a dead-letter topic, with what the consumer said about it."""

    record: Record

    @property
    def event_id(self) -> str:
        """The CloudEvents id (or where the record was, if it had none)."""
        return self.record.header("ce_id") or self.original_position

    @property
    def original_topic(self) -> str:
        """The topic the event was read from."""
        return self.record.header("dlq_original_topic") or self.record.topic.removesuffix(
            DEAD_LETTER_SUFFIX
        )

    @property
    def original_position(self) -> str:
        """``topic[partition]@offset`` of the event before it was dead-lettered."""
        partition = self.record.header("dlq_original_partition") or "?"
        offset = self.record.header("dlq_original_offset") or "?"
        return f"{self.original_topic}[{partition}]@{offset}"

    @property
    def reason(self) -> str:
        """Why it was dead-lettered."""
        return self.record.header("dlq_reason") or ""

    def replay_message(self) -> OutgoingMessage:
        """The event as it was first published: same key, value and headers."""
        headers = [(k, v) for k, v in self.record.headers if not k.startswith(_DLQ_HEADER_PREFIX)]
        return OutgoingMessage(self.original_topic, self.record.key, self.record.value, headers)


class _Reader:
    """Reads a dead-letter topic to its current end with one member of ``group``."""

    def __init__(self, bus: Bus, topic: str, group: str) -> None:
        self.bus = bus
        self.topic = dead_letter_topic(topic)
        self.consumer = bus.consumer(group, [self.topic])

    async def read(self, *, from_start: bool, timeout_s: float = 60.0) -> list[Record]:
        ends = await self.bus.end_offsets(self.topic)
        await self.consumer.start()
        records: list[Record] = []
        positions: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        seeked = not from_start
        idle = 0
        while time.monotonic() < deadline:
            owned = {p for t, p in self.consumer.assignment() if t == self.topic}
            if not seeked and owned:
                await self.consumer.seek({(self.topic, p): 0 for p in owned})
                records.clear()
                positions.clear()
                seeked = True
            batch = await self.consumer.poll(0.5, 1000)
            for record in batch:
                records.append(record)
                positions[record.partition] = record.offset + 1
            done = all(positions.get(p, 0) >= end for p, end in ends.items() if end > 0)
            if seeked and owned and len(owned) == len(ends):
                if done:
                    break
                # Nothing more comes for partitions this group already read to the end.
                idle = 0 if batch else idle + 1
                if idle >= 3:
                    break
        return records

    async def close(self) -> None:
        await self.consumer.stop()


async def list_dead_letters(bus: Bus, topic: str) -> list[DeadLetter]:
    """Every record of ``topic``'s dead-letter topic, oldest first per partition."""
    reader = _Reader(bus, topic, f"dunning-dlq-list-{time.time_ns()}")
    try:
        return [DeadLetter(r) for r in await reader.read(from_start=True)]
    finally:
        await reader.close()


async def replay(bus: Bus, topic: str, ids: Collection[str] = ()) -> list[DeadLetter]:
    """Re-publish dead-lettered events of ``topic`` not replayed yet (only ``ids`` if given).

    Returns what was replayed. The replay group's offsets are committed after the
    publish, so a crash in between replays them again (applied once all the same).
    """
    reader = _Reader(bus, topic, REPLAY_GROUP)
    try:
        records = await reader.read(from_start=False)
        chosen = [DeadLetter(r) for r in records if not ids or DeadLetter(r).event_id in ids]
        await bus.publish([d.replay_message() for d in chosen])
        commits: dict[TopicPartition, int] = {}
        blocked: set[int] = set()
        for record in records:
            if ids and DeadLetter(record).event_id not in ids:
                blocked.add(record.partition)  # keep it, and what follows, for later
            elif record.partition not in blocked:
                commits[(reader.topic, record.partition)] = record.offset + 1
        await reader.consumer.commit(commits)
        return chosen
    finally:
        await reader.close()
