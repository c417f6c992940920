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
* Publishing retries with tenacity (exponential backoff, jitter, bounded by
  elapsed time); a failed publish raises and the relay tries again later.
* aiokafka logs every failed connection attempt (~100 lines/s while a broker is
  down); those lines become one "outage began" and one "outage over" line.
* Every client is closed on every path (start failing, cancelled, broker down),
  and stopping never waits on a dead broker for more than ``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    OutOfOrderSequenceNumber,
    TopicAlreadyExistsError,
)
from aiokafka.structs import OffsetAndMetadata

from dunning_events import topics
from dunning_runtime.bus.port import BatchGate, OutgoingMessage, Record, with_dead_letter_topics
from dunning_runtime.bus.port import TopicPartition as TP
from dunning_runtime.errors import Outage, is_transient, raise_if_cancelled, transient_retries

#: Topics whose records are the latest state of their key (a managed API key): Kafka keeps
#: the last record of every key for good, so a service started later, with a new
#: database, still learns every key (``dunning_runtime.api_keys``).
COMPACTED_TOPICS: tuple[str, ...] = (topics.API_KEYS,)

log = logging.getLogger(__name__)

#: The broker as this process sees it: one line when it goes away, one when it is back.
BROKER = Outage("kafka broker", log)
#: The longest a stop waits for a client to leave its group or flush; then what is
#: local (fetcher, sockets) is closed, each within ``_LOCAL_CLOSE_S``. Together they
#: stay under the supervisor's 1.5 s for a task to stop.
STOP_TIMEOUT_S = 0.6
_LOCAL_CLOSE_S = 0.25
#: How long a cancelled start may go on to finish its bootstrap (see ``_start``).
_START_GRACE_S = 0.4

#: aiokafka messages that mean "the broker cannot be reached" (an outage).
_UNREACHABLE_WORDS = (
    "unable connect",
    "connect call failed",
    "connection refused",
    "nodenotready",
    "kafkaconnectionerror",
    "timed out",
    "timeout",
    "unable to update metadata",
    "produce response",
)
#: Ones that a healthy cluster says in passing (a new topic's leader being elected, a
#: group coordinator moving): not worth an operator's attention.
_PASSING_WORDS = ("notleader", "leadernotavailable", "coordinatornotavailable", "notcoordinator")


class _BrokerNoise(logging.Handler):
    """Turns aiokafka's per-attempt connection errors into ``BROKER`` outage lines."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            return
        message = record.getMessage()
        lowered = message.lower()
        if any(word in lowered for word in _PASSING_WORDS):
            log.debug("aiokafka: %s", message)
        elif any(word in lowered for word in _UNREACHABLE_WORDS):
            BROKER.failed(message)
        else:
            log.log(record.levelno, "aiokafka: %s", message)


def quiet_aiokafka() -> None:
    """Route aiokafka's logs through ``_BrokerNoise`` instead of the root logger (idempotent)."""
    root = logging.getLogger("aiokafka")
    if not any(isinstance(h, _BrokerNoise) for h in root.handlers):
        root.addHandler(_BrokerNoise())
        root.propagate = False


quiet_aiokafka()


async def _close_quietly(what: str, close: Any, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Await ``close()`` for at most ``timeout_s``; a dead broker must not hold a stop."""
    try:
        await asyncio.wait_for(close(), timeout_s)
    except TimeoutError:
        log.warning("%s did not close within %.1f s; dropped", what, timeout_s)
    except Exception as exc:
        log.warning("closing %s failed: %s", what, exc)


async def _start(start: Any) -> None:
    """Await an aiokafka client's ``start()`` without ever cutting it short.

    aiokafka's bootstrap leaks its connection ("Unclosed AIOKafkaConnection") when it
    is cancelled while waiting for the metadata answer. So a cancellation lets the
    start finish first (for at most ``_START_GRACE_S``) and is raised after it; the
    caller then stops the client as for any failed start.
    """
    task = asyncio.ensure_future(start())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, _START_GRACE_S)
        raise


def _retry_publish(exc: BaseException) -> bool:
    return isinstance(exc, OutOfOrderSequenceNumber) or is_transient(exc)


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
        publish_retry_s: float = 10.0,
        client_options: Mapping[str, Any] | None = None,
        linger_ms: int = 5,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        self.bootstrap = ",".join(bootstrap)
        #: Latency against requests (``DUNNING_KAFKA_LINGER_MS``, ``..._FETCH_MAX_WAIT_MS``).
        self.linger_ms = linger_ms
        self.fetch_max_wait_ms = fetch_max_wait_ms
        #: TLS and SASL options given to every client (``dunning_runtime.tls``).
        self.client_options = dict(client_options or {})
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.topic_prefix = topic_prefix
        self.client_id = client_id
        self.max_poll_interval_ms = max_poll_interval_ms
        self.session_timeout_ms = session_timeout_ms
        self.publish_retry_s = publish_retry_s
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._admin: AIOKafkaAdminClient | None = None
        self._admin_lock = asyncio.Lock()
        self._reader: AIOKafkaConsumer | None = None
        self._reader_lock = asyncio.Lock()

    def physical(self, topic: str) -> str:
        """The broker's name of a logical topic."""
        return self.topic_prefix + topic

    def physical_group(self, group: str) -> str:
        """The broker's name of a consumer group: prefixed like the topics."""
        return self.topic_prefix + group

    async def start(self) -> None:
        """Start the idempotent producer."""
        self._producer = await self._new_producer()

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **self.client_options,
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=self.linger_ms,
            request_timeout_ms=30_000,
        )
        try:
            await _start(producer.start)
        except BaseException:
            await _close_quietly("a producer that failed to start", producer.stop)
            raise
        return producer

    async def close(self) -> None:
        """Flush and stop the producer and the cached admin client."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await _close_quietly("the Kafka producer", producer.stop)
        admin, self._admin = self._admin, None
        if admin is not None:
            await _close_quietly("the Kafka admin client", admin.close)
        await self._drop_offset_reader()

    async def _admin_client(self) -> AIOKafkaAdminClient:
        """One admin client for pings, made on first use and dropped when it fails."""
        async with self._admin_lock:
            if self._admin is None:
                admin = AIOKafkaAdminClient(
                    **self.client_options,
                    bootstrap_servers=self.bootstrap,
                    request_timeout_ms=5_000,
                )
                try:
                    await _start(admin.start)
                except BaseException:
                    await _close_quietly("an admin client that failed to start", admin.close)
                    raise
                self._admin = admin
            return self._admin

    async def ping(self) -> None:
        """Raise unless the cluster answers a metadata request."""
        try:
            admin = await self._admin_client()
            await asyncio.wait_for(admin.describe_cluster(), 5)
        except Exception as exc:
            BROKER.failed(exc)
            await self._drop_admin()
            raise
        BROKER.recovered()

    async def _drop_admin(self) -> None:
        """Forget the cached admin client (it failed); the next use makes a new one."""
        async with self._admin_lock:
            admin, self._admin = self._admin, None
        if admin is not None:
            await _close_quietly("the Kafka admin client", admin.close)

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create topics and their dead-letter topics with the configured partitions."""
        names = {self.physical(t) for t in with_dead_letter_topics(topics)}
        admin = AIOKafkaAdminClient(
            **self.client_options, bootstrap_servers=self.bootstrap, request_timeout_ms=30_000
        )
        try:
            await _start(admin.start)
            existing = set(await admin.list_topics())
            compacted = {self.physical(t) for t in COMPACTED_TOPICS}
            missing = [
                NewTopic(
                    name,
                    self.partitions,
                    self.replication_factor,
                    topic_configs={"cleanup.policy": "compact"} if name in compacted else {},
                )
                for name in sorted(names - existing)
            ]
            if missing:
                # Another instance may create one between our list and create.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
        finally:
            await _close_quietly("an admin client", admin.close)

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message and wait until the cluster acknowledged all of them.

        Transient failures are retried (the whole batch: a message sent twice is a
        duplicate the inbox absorbs, and per-key order still holds) for up to
        ``publish_retry_s``; then the error is raised.
        """
        if not messages:
            return
        async for attempt in transient_retries(
            BROKER,
            max_s=self.publish_retry_s,
            backoff_s=0.1,
            max_wait_s=2.0,
            retry=_retry_publish,
        ):
            with attempt:
                try:
                    await self._send_all(messages)
                except OutOfOrderSequenceNumber:
                    log.warning("producer lost its sequence; replacing it")
                    await self._replace_producer()
                    raise
        BROKER.recovered()

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
                await _close_quietly("the old producer", old.stop)
            self._producer = await self._new_producer()

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaConsumer:
        """A new member of ``group``."""
        return KafkaConsumer(self, self.physical_group(group), [self.physical(t) for t in topics])

    async def _offset_reader(self) -> AIOKafkaConsumer:
        """One consumer outside any group for reading end offsets (lag is read on every
        scrape: a new client each time would cost a connection and a metadata round)."""
        async with self._reader_lock:
            if self._reader is None:
                reader = AIOKafkaConsumer(
                    **self.client_options,
                    bootstrap_servers=self.bootstrap,
                    client_id=self.client_id,
                )
                try:
                    await _start(reader.start)
                except BaseException:
                    await _close_quietly("an offset reader that failed to start", reader.stop)
                    raise
                self._reader = reader
            return self._reader

    async def _drop_offset_reader(self) -> None:
        async with self._reader_lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            await _close_quietly("the Kafka offset reader", reader.stop)

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Next offset per partition of a logical topic (for lag and tests)."""
        reader = await self._offset_reader()
        try:
            parts = reader.partitions_for_topic(self.physical(topic)) or set()
            if not parts:
                await reader._client.force_metadata_update()
                parts = reader.partitions_for_topic(self.physical(topic)) or set()
            tps = [TopicPartition(self.physical(topic), p) for p in parts]
            ends = await reader.end_offsets(tps) if tps else {}
        except Exception:
            await self._drop_offset_reader()  # the next call starts afresh
            raise
        return {tp.partition: int(off) for tp, off in ends.items()}

    async def committed_offsets(self, group: str, topics: Sequence[str]) -> dict[TP, int]:
        """The next offset ``group`` committed per partition of ``topics`` (for lag)."""
        wanted = {self.physical(t) for t in topics}
        try:
            admin = await self._admin_client()
            offsets = await admin.list_consumer_group_offsets(self.physical_group(group))
        except Exception:
            await self._drop_admin()
            raise
        return {
            (tp.topic.removeprefix(self.topic_prefix), tp.partition): int(meta.offset)
            for tp, meta in offsets.items()
            if tp.topic in wanted and meta.offset >= 0
        }

    async def enforce_retention(self) -> int:
        """Nothing to do: the broker's own retention (retention.ms/bytes) applies."""
        return 0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in hand finish before its partitions are given up."""

    def __init__(self, owner: KafkaConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in revoked}
        # First refuse new batches of these partitions, then wait for those in hand:
        # once they are done their transactions and offsets are committed.
        self.owner.revoked.update(gone)
        await self.owner.gate.wait_free(gone)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.owner.revoked.difference_update((tp.topic, tp.partition) for tp in assigned)


class KafkaConsumer:
    """One member of a Kafka consumer group with manual, owner-checked commits."""

    def __init__(self, bus: KafkaBus, group: str, topics: list[str]) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        #: Physical partitions given up (or being given up) in a rebalance.
        self.revoked: set[TP] = set()
        self.gate = BatchGate()
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Join the group (topics are created first so the assignment covers every partition)."""
        await self.bus.ensure_topics([t.removeprefix(self.bus.topic_prefix) for t in self.topics])
        raise_if_cancelled()  # closing the admin client may have swallowed a stop
        consumer = AIOKafkaConsumer(
            **self.bus.client_options,
            bootstrap_servers=self.bus.bootstrap,
            group_id=self.group,
            client_id=f"{self.bus.client_id}-{self.group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_interval_ms=self.bus.max_poll_interval_ms,
            session_timeout_ms=self.bus.session_timeout_ms,
            heartbeat_interval_ms=max(1000, self.bus.session_timeout_ms // 4),
            fetch_max_wait_ms=self.bus.fetch_max_wait_ms,
        )
        consumer.subscribe(self.topics, listener=_Rebalance(self))
        self._consumer = consumer
        try:
            await _start(consumer.start)
            raise_if_cancelled()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Leave the group; within ``STOP_TIMEOUT_S`` even when the broker is gone.

        aiokafka's stop waits for the group protocol in flight, e.g. a JoinGroup that
        the broker holds for ``group.initial.rebalance.delay.ms`` (3 s by default) for
        a new group, or a LeaveGroup to a dead broker. Past the bound, the fetcher and
        the sockets are closed here instead: the broker drops the member after its
        session timeout.
        """
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)
            return
        except TimeoutError:
            log.info("consumer of %s left its group without saying goodbye", self.group)
        except Exception as exc:
            log.info("consumer of %s stopped with an error: %s", self.group, exc)
        # aiokafka has no public "close without leaving": its parts, as its stop does.
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is not None:
            await _close_quietly("a consumer's fetcher", fetcher.close, _LOCAL_CLOSE_S)
        await _close_quietly("a consumer's connections", consumer._client.close, _LOCAL_CLOSE_S)

    def _physical_tp(self, partition: TP) -> TopicPartition:
        return TopicPartition(self.bus.physical(partition[0]), partition[1])

    def assignment(self) -> set[TP]:
        """Partitions owned now."""
        if self._consumer is None:
            return set()
        return {
            (tp.topic.removeprefix(self.bus.topic_prefix), tp.partition)
            for tp in self._consumer.assignment()
        }

    @contextlib.asynccontextmanager
    async def batch(self, partition: TP) -> AsyncIterator[bool]:
        """Hold ``partition`` while its batch is processed; yields whether it is still ours."""
        async with self.gate.hold((self.bus.physical(partition[0]), partition[1])):
            tp = self._physical_tp(partition)
            yield (
                self._consumer is not None
                and tp in self._consumer.assignment()
                and (tp.topic, tp.partition) not in self.revoked
            )

    def pause(self, partitions: Collection[TP]) -> None:
        """Fetch nothing more of ``partitions`` until resumed."""
        if self._consumer is not None:
            owned = self._consumer.assignment()
            tps = [tp for tp in map(self._physical_tp, partitions) if tp in owned]
            if tps:
                self._consumer.pause(*tps)

    def resume(self, partitions: Collection[TP]) -> None:
        """Undo ``pause``."""
        if self._consumer is not None:
            owned = self._consumer.assignment()
            tps = [tp for tp in map(self._physical_tp, partitions) if tp in owned]
            if tps:
                self._consumer.resume(*tps)

    async def seek(self, offsets: Mapping[TP, int]) -> None:
        """Next ``poll`` of each owned partition starts at the offset given."""
        if self._consumer is None:
            raise RuntimeError("the consumer is not started")
        owned = self._consumer.assignment()
        for partition, offset in offsets.items():
            tp = self._physical_tp(partition)
            if tp in owned:
                self._consumer.seek(tp, offset)

    async def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        """One ``getmany`` call; records in offset order within each partition."""
        if self._consumer is None:
            raise RuntimeError("the consumer is not started")
        batches = await self._consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=max_records
        )
        if batches:
            BROKER.recovered()
        prefix = self.bus.topic_prefix
        return [
            Record(
                topic=tp.topic.removeprefix(prefix),
                partition=tp.partition,
                offset=msg.offset,
                key=msg.key or b"",
                value=msg.value or b"",
                # aiokafka hands (str, bytes) pairs already: no copy per header.
                headers=list(msg.headers) if msg.headers else [],
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
        for partition, offset in offsets.items():
            tp = self._physical_tp(partition)
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
