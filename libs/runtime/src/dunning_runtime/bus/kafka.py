"""The bus port on Apache Kafka (aiokafka): the production path.

Choices, each against a known failure:

* Producer: idempotent, ``acks=all``; the key is ``tenant:account`` so one
  account's events share a partition. An idempotent producer can get stuck on
  ``OutOfOrderSequenceNumber`` (aiokafka #1017); we then replace it with a new
  producer (new producer id) and send the batch again, without a restart.
* Consumer: manual commit only (the runtime commits after the handler's
  database transaction), ``getmany`` batches, and a rebalance listener that
  waits for the batch in hand before partitions are given up and forgets them,
  so offsets are committed only for partitions still owned (the pattern of
  aiokafka's ``examples/local_state_consumer.py``). A ``CommitFailedError``
  after a rebalance is harmless: the records come again and the inbox skips them.
* A member with no partitions must keep polling: aiokafka measures idleness
  between ``getmany`` calls and will not rejoin after ``max_poll_interval_ms``
  of it (#720, #1187). The consumer runtime polls at least once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    OutOfOrderSequenceNumber,
    TopicAlreadyExistsError,
)
from aiokafka.structs import OffsetAndMetadata

from dunning_runtime.bus.port import OutgoingMessage, Record, with_dead_letter_topics
from dunning_runtime.bus.port import TopicPartition as TP

log = logging.getLogger(__name__)


class KafkaBus:
    """The bus port on a Kafka cluster."""

    def __init__(
        self,
        bootstrap: list[str],
        *,
        partitions: int = 8,
        replication_factor: int = 1,
        topic_prefix: str = "",
        client_id: str = "dunning",
        max_poll_interval_ms: int = 300_000,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self.bootstrap = ",".join(bootstrap)
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.topic_prefix = topic_prefix
        self.client_id = client_id
        self.max_poll_interval_ms = max_poll_interval_ms
        self.session_timeout_ms = session_timeout_ms
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()

    def physical(self, topic: str) -> str:
        """The broker's name of a logical topic."""
        return self.topic_prefix + topic

    async def start(self) -> None:
        """Start the idempotent producer."""
        self._producer = await self._new_producer()

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            request_timeout_ms=30_000,
        )
        await producer.start()
        return producer

    async def close(self) -> None:
        """Flush and stop the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def ping(self) -> None:
        """Raise unless the cluster answers a metadata request."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5_000)
        await admin.start()
        try:
            await admin.describe_cluster()
        finally:
            await admin.close()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create topics and their dead-letter topics with the configured partitions."""
        names = {self.physical(t) for t in with_dead_letter_topics(topics)}
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30_000)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(name, self.partitions, self.replication_factor)
                for name in sorted(names - existing)
            ]
            if missing:
                # Another instance may create one between our list and create.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
        finally:
            await admin.close()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message and wait until the cluster acknowledged all of them."""
        if not messages:
            return
        for attempt in range(1, 4):
            try:
                await self._send_all(messages)
                return
            except OutOfOrderSequenceNumber:
                log.warning("producer lost its sequence (attempt %d); replacing it", attempt)
                await self._replace_producer()
            except (KafkaError, IllegalStateError) as exc:
                if attempt == 3:
                    raise
                log.warning("publish failed (attempt %d): %s", attempt, exc)
                await asyncio.sleep(0.2 * attempt)
        raise KafkaError("could not publish after replacing the producer")

    async def _send_all(self, messages: Sequence[OutgoingMessage]) -> None:
        async with self._producer_lock:
            producer = self._producer
            if producer is None:
                raise RuntimeError("the Kafka bus is not started")
            # send() queues in order; one producer keeps per-partition order.
            futures = [
                await producer.send(
                    self.physical(m.topic), value=m.value, key=m.key, headers=list(m.headers)
                )
                for m in messages
            ]
        await asyncio.gather(*futures)

    async def _replace_producer(self) -> None:
        async with self._producer_lock:
            old, self._producer = self._producer, None
            if old is not None:
                try:
                    await old.stop()
                except Exception:  # a broken producer may fail to stop; it is dropped anyway
                    log.exception("stopping the old producer failed")
            self._producer = await self._new_producer()

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaConsumer:
        """A new member of ``group``."""
        return KafkaConsumer(self, group, [self.physical(t) for t in topics])

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Next offset per partition of a logical topic (for lag and tests)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(self.physical(topic)) or set()
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(self.physical(topic)) or set()
            tps = [TopicPartition(self.physical(topic), p) for p in parts]
            ends = await consumer.end_offsets(tps)
            return {tp.partition: int(off) for tp, off in ends.items()}
        finally:
            await consumer.stop()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in hand finish before its partitions are given up."""

    def __init__(self, owner: KafkaConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Waiting for the processing lock means the batch that holds these
        # partitions has committed its transaction and its offsets.
        async with self.owner.processing:
            self.owner.revoked.update((tp.topic, tp.partition) for tp in revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.owner.revoked.difference_update((tp.topic, tp.partition) for tp in assigned)


class KafkaConsumer:
    """One member of a Kafka consumer group with manual, owner-checked commits."""

    def __init__(self, bus: KafkaBus, group: str, topics: list[str]) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        self.processing = asyncio.Lock()
        self.revoked: set[TP] = set()
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Join the group (topics are created first so the assignment covers every partition)."""
        await self.bus.ensure_topics([t.removeprefix(self.bus.topic_prefix) for t in self.topics])
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bus.bootstrap,
            group_id=self.group,
            client_id=f"{self.bus.client_id}-{self.group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_interval_ms=self.bus.max_poll_interval_ms,
            session_timeout_ms=self.bus.session_timeout_ms,
            heartbeat_interval_ms=max(1000, self.bus.session_timeout_ms // 4),
        )
        self._consumer.subscribe(self.topics, listener=_Rebalance(self))
        await self._consumer.start()

    async def stop(self) -> None:
        """Leave the group."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def assignment(self) -> set[TP]:
        """Partitions owned now."""
        if self._consumer is None:
            return set()
        return {
            (tp.topic.removeprefix(self.bus.topic_prefix), tp.partition)
            for tp in self._consumer.assignment()
        }

    async def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        """One ``getmany`` call; records in offset order within each partition."""
        if self._consumer is None:
            raise RuntimeError("the consumer is not started")
        batches = await self._consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=max_records
        )
        prefix = self.bus.topic_prefix
        return [
            Record(
                topic=tp.topic.removeprefix(prefix),
                partition=tp.partition,
                offset=msg.offset,
                key=msg.key or b"",
                value=msg.value or b"",
                headers=[(k, bytes(v)) for k, v in (msg.headers or ())],
                timestamp_ms=msg.timestamp,
            )
            for tp, messages in sorted(batches.items())
            for msg in messages
        ]

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit offsets of partitions still owned; a lost race with a rebalance is logged."""
        if self._consumer is None or not offsets:
            return
        owned = self._consumer.assignment()
        to_commit: dict[TopicPartition, Any] = {}
        for (topic, partition), offset in offsets.items():
            tp = TopicPartition(self.bus.physical(topic), partition)
            if tp in owned:
                to_commit[tp] = OffsetAndMetadata(offset, "")
        if not to_commit:
            return
        try:
            await self._consumer.commit(to_commit)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced under us: the new owner re-reads from the last
            # committed offset and the inbox skips what we already applied.
            log.warning("commit lost to a rebalance in group %s: %s", self.group, exc)
