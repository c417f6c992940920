"""The consumer runtime: read a batch, apply it with the inbox, then commit offsets.

For each partition's records in a batch:

1. Fast path: one database transaction applies every event not yet in the
   inbox and records them. One commit per partition chunk keeps the embedded
   SQLite and PostgreSQL stores fast.
2. If that fails (or a record cannot be decoded), the chunk is replayed one
   record at a time, each in its own transaction, with up to
   ``max_attempts`` tries. A record that still fails goes to ``<topic>.dlq``
   with its reason and attempt count, is marked dead-lettered in the inbox, and
   the consumer moves on (principle 10).

Offsets are committed only after the transactions committed, and only for
partitions the member still owns: at-least-once delivery, applied exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope
from dunning_events.codec import DecodeError, from_kafka
from dunning_events.topics import dead_letter_topic
from dunning_runtime import inbox
from dunning_runtime.bus.port import Bus, BusConsumer, OutgoingMessage, Record
from dunning_runtime.db import Database
from dunning_runtime.telemetry import consume_span

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]

CONSUMED = Counter(
    "dunning_events_consumed_total",
    "Events consumed, by outcome (applied, duplicate, dead_lettered)",
    ["group", "topic", "outcome"],
)


@dataclass(frozen=True)
class Subscription:
    """What a service consumes: a group, its topics and the handler applying each event."""

    group: str
    topics: tuple[str, ...]
    handler: Handler


class EventConsumer:
    """Runs one subscription on one bus consumer until cancelled."""

    def __init__(
        self,
        bus: Bus,
        database: Database,
        subscription: Subscription,
        *,
        max_attempts: int = 5,
        batch_size: int = 200,
        retry_backoff_s: float = 0.05,
    ) -> None:
        self.bus = bus
        self.database = database
        self.subscription = subscription
        self.group = subscription.group
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.retry_backoff_s = retry_backoff_s
        self.consumer: BusConsumer = bus.consumer(subscription.group, subscription.topics)
        self.started = asyncio.Event()

    async def run(self) -> None:
        """Consume until cancelled."""
        await self.consumer.start()
        self.started.set()
        try:
            while True:
                await self.poll_once(timeout_s=1.0)
        finally:
            await self.consumer.stop()

    async def poll_once(self, timeout_s: float) -> int:
        """Fetch and apply one batch; returns how many records it held.

        It is called at least once a second even when idle: that also keeps a
        Kafka member with no partitions in its group (aiokafka #720, #1187).
        """
        records = await self.consumer.poll(timeout_s, self.batch_size)
        if not records:
            return 0
        async with self.consumer.processing:
            offsets: dict[tuple[str, int], int] = {}
            for (topic, partition), chunk in groupby(records, key=lambda r: (r.topic, r.partition)):
                chunk_records = list(chunk)
                await self._apply_chunk(chunk_records)
                offsets[(topic, partition)] = chunk_records[-1].offset + 1
            await self.consumer.commit(offsets)
        return len(records)

    async def _apply_chunk(self, records: Sequence[Record]) -> None:
        decoded: list[tuple[Record, Envelope]] = []
        for record in records:
            try:
                decoded.append((record, from_kafka(record.key, record.value, record.headers)))
            except DecodeError:
                break  # the slow path dead-letters it, in order with its neighbours
        else:
            try:
                async with self.database.transaction() as session:
                    await self._apply_batch(session, decoded)
                return
            except Exception as exc:
                log.info("%s: batch failed (%s); retrying record by record", self.group, exc)
        for record in records:
            await self._apply_alone(record)

    async def _apply_batch(
        self, session: AsyncSession, decoded: list[tuple[Record, Envelope]]
    ) -> None:
        """Apply a chunk in one transaction: one inbox query and one inbox insert in all."""
        already = await inbox.seen_among(session, self.group, [e.id for _, e in decoded])
        applied: list[tuple[str, str]] = []
        for record, envelope in decoded:
            if envelope.id in already:
                CONSUMED.labels(self.group, record.topic, "duplicate").inc()
                continue
            already.add(envelope.id)  # the same event twice in one batch
            await self._handle(session, record, envelope)
            applied.append((envelope.id, record.topic))
        await inbox.record_all(session, self.group, applied)
        for _, topic in applied:
            CONSUMED.labels(self.group, topic, "applied").inc()

    async def _handle(self, session: AsyncSession, record: Record, envelope: Envelope) -> None:
        with consume_span(
            record.topic,
            self.group,
            record.headers,
            **{
                "messaging.message.id": envelope.id,
                "messaging.destination.partition.id": str(record.partition),
                "cloudevents.event_type": envelope.type,
                "dunning.tenant": envelope.tenant,
                "dunning.account_id": envelope.subject,
            },
        ):
            await self.subscription.handler(session, envelope)

    async def _apply_alone(self, record: Record) -> None:
        try:
            envelope = from_kafka(record.key, record.value, record.headers)
        except DecodeError as exc:
            # Invalid bytes stay invalid: no point in retrying.
            await self._dead_letter(record, f"undecodable event: {exc}", attempts=1)
            return
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self.database.transaction() as session:
                    await self._apply_batch(session, [(record, envelope)])
                return
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "%s: event %s failed (attempt %d/%d): %s",
                    self.group,
                    envelope.id,
                    attempt,
                    self.max_attempts,
                    error,
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(min(self.retry_backoff_s * 2 ** (attempt - 1), 2.0))
        await self._dead_letter(record, error, attempts=self.max_attempts, event_id=envelope.id)

    async def _dead_letter(
        self, record: Record, reason: str, *, attempts: int, event_id: str | None = None
    ) -> None:
        """Publish the record to ``<topic>.dlq`` with why and how often it failed."""
        event_id = (
            event_id
            or record.header("ce_id")
            or f"{record.topic}/{record.partition}/{record.offset}"
        )
        headers = [
            *record.headers,
            ("dlq_reason", reason[:2000].encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_original_topic", record.topic.encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_consumer_group", self.group.encode()),
            ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        await self.bus.publish(
            [
                OutgoingMessage(
                    topic=dead_letter_topic(record.topic),
                    key=record.key,
                    value=record.value,
                    headers=headers,
                )
            ]
        )
        log.error(
            "%s: event %s from %s[%d]@%d dead-lettered after %d attempt(s): %s",
            self.group,
            event_id,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            reason,
        )
        try:
            async with self.database.transaction() as session:
                if not await inbox.seen(session, self.group, event_id):
                    await inbox.record(
                        session, self.group, event_id, record.topic, inbox.DEAD_LETTERED
                    )
        except Exception:
            log.exception("%s: could not mark %s dead-lettered", self.group, event_id)
        CONSUMED.labels(self.group, record.topic, "dead_lettered").inc()
