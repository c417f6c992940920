"""The consumer runtime: read, apply each partition's chunk with the inbox, then commit.

Per partition chunk (at most ``batch_size`` records of one partition):

1. One transaction: one inbox statement both filters the events already applied
   and records the new ones, then the subscription's handler applies the new ones
   (a batch handler gets them all at once, in partition order; the one-event
   handler is called for each, in order). Offsets are committed after the
   transaction, and only for partitions the member still owns.
2. Partitions are applied concurrently (``concurrency`` at once); a partition is
   paused while its chunk is in hand, so its order holds.

Failure policy (principle 10):

* **Poison** goes to ``<topic>.dlq`` at once with its reason: an undecodable or
  schema-invalid event, or a handler's ``EventRejected`` (a batch handler names
  the event; the others are applied without it).
* **Transient** (``errors.is_transient``: database or broker away, serialization
  failure, deadlock, timeout): the chunk is retried with exponential backoff and
  jitter (tenacity), bounded by elapsed time (``retry_max_s``), never by attempts.
  Only that partition waits; the others go on. Past the bound ``run()`` raises and
  the supervisor restarts the consumer: a good event is never dead-lettered.
* **Anything else** a handler raises: the chunk is applied one event at a time to
  find the event at fault, which gets ``max_attempts`` quick tries and then goes
  to the DLQ; its neighbours are applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope
from dunning_events.codec import DecodeError, from_kafka
from dunning_events.topics import dead_letter_topic
from dunning_runtime import inbox, logs
from dunning_runtime.bus.port import Bus, BusConsumer, OutgoingMessage, Record, TopicPartition
from dunning_runtime.db import Database
from dunning_runtime.errors import (
    EventRejected,
    Outage,
    describe,
    is_transient,
    raise_if_cancelled,
    transient_retries,
)
from dunning_runtime.metrics import EVENTS_CONSUMED, EVENTS_DEAD_LETTERED, TRANSIENT_RETRIES
from dunning_runtime.telemetry import batch_span, consume_span, tracing_enabled

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, Sequence[Envelope]], Awaitable[None]]

#: Longest dead-letter reason, in the log line and the ``dlq_reason`` header.
MAX_REASON_CHARS = 1000

#: Longest single wait between two attempts at a chunk during an outage.
MAX_RETRY_WAIT_S = 5.0

_Decoded = tuple[Record, Envelope]


@dataclass(frozen=True)
class Subscription:
    """What a service consumes: a group, its topics and how to apply their events.

    Exactly one of ``handler`` (one event at a time) and ``batch_handler`` (a
    partition's chunk at once) is given. Both run inside the chunk's transaction,
    on events not yet in the inbox, in partition order.
    """

    group: str
    topics: tuple[str, ...]
    handler: Handler | None = None
    batch_handler: BatchHandler | None = None

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.batch_handler is None):
            raise ValueError(f"{self.group}: give exactly one of handler and batch_handler")


class EventConsumer:
    """Runs one subscription: ``run()`` consumes until cancelled or until it cannot go on."""

    def __init__(
        self,
        bus: Bus,
        database: Database,
        subscription: Subscription,
        *,
        max_attempts: int = 5,
        batch_size: int = 200,
        retry_backoff_s: float = 0.05,
        concurrency: int = 4,
        retry_max_s: float = 300.0,
        service: str = "",
    ) -> None:
        self.bus = bus
        #: The ``service`` label of this consumer's metrics.
        self.service = service
        self.database = database
        self.subscription = subscription
        self.group = subscription.group
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.retry_backoff_s = retry_backoff_s
        self.concurrency = concurrency
        self.retry_max_s = retry_max_s
        #: The bus consumer of the current (or last) ``run``.
        self.consumer: BusConsumer = bus.consumer(subscription.group, subscription.topics)
        self.started = asyncio.Event()
        self.outage = Outage(f"consumer {self.group}", log)
        self._slots = asyncio.Semaphore(concurrency)
        self._workers: dict[TopicPartition, asyncio.Task[None]] = {}
        self._failure: BaseException | None = None
        # Records dead-lettered while their chunk is still being retried: not twice.
        self._dead: set[tuple[str, int, int]] = set()
        # Every series this consumer can move exists from the start, at 0: a rate over the
        # first event (a dashboard's first dead letter) needs a sample from before it.
        for topic in subscription.topics:
            for outcome in ("applied", "duplicate", "dead_lettered"):
                EVENTS_CONSUMED.labels(service, self.group, topic, outcome)
            EVENTS_DEAD_LETTERED.labels(service, self.group, topic)
        TRANSIENT_RETRIES.labels(service, self.group)

    async def run(self) -> None:
        """Consume until cancelled; raise when the consumer cannot go on.

        Re-entrant: each call joins the group with a fresh bus consumer, and leaves
        it on every exit. It raises when a DLQ publish, a poll or a commit fails, or
        a transient failure outlasts ``retry_max_s``; the supervisor restarts it.
        """
        self.consumer = self.bus.consumer(self.group, self.subscription.topics)
        self._failure = None
        try:
            await self.consumer.start()
            self.started.set()
            while True:
                raise_if_cancelled()
                # Poll briefly while chunks are in hand: a finished partition is resumed
                # and read again without waiting out a long poll.
                await self._dispatch(0.05 if self._workers else 1.0)
        finally:
            self.started.clear()
            await self._stop_workers()
            await self.consumer.stop()

    async def poll_once(self, timeout_s: float) -> int:
        """Fetch one batch and apply it completely; returns how many records it held.

        For tests and tools driving a started ``consumer`` by hand; ``run`` does not
        wait for one batch before fetching the next.
        """
        count = await self._dispatch(timeout_s)
        while self._workers:
            await asyncio.wait(list(self._workers.values()))
        self._raise_failure()
        return count

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    async def _dispatch(self, timeout_s: float) -> int:
        """One poll; each partition's chunk goes to a worker task, the partition paused."""
        self._raise_failure()
        # It is called at least once a second even when idle: that also keeps a
        # Kafka member with no partitions in its group (aiokafka #720, #1187).
        records = await self.consumer.poll(timeout_s, self.batch_size * self.concurrency)
        if not records:
            return 0
        chunks: dict[TopicPartition, list[Record]] = {}
        for record in records:
            chunks.setdefault((record.topic, record.partition), []).append(record)
        for tp, chunk in chunks.items():
            self.consumer.pause([tp])
            # A worker still busy with this partition (it was lost and given back
            # during a retry) goes first: one partition, one chunk at a time.
            before = self._workers.get(tp)
            self._workers[tp] = asyncio.create_task(
                self._work(tp, chunk, before), name=f"{self.group}-{tp[0]}-{tp[1]}"
            )
        return len(records)

    async def _stop_workers(self) -> None:
        workers = list(self._workers.values())
        self._workers.clear()
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)

    async def _work(
        self, tp: TopicPartition, records: list[Record], before: asyncio.Task[None] | None
    ) -> None:
        me = asyncio.current_task()
        try:
            if before is not None:
                await asyncio.wait([before])
            for start in range(0, len(records), self.batch_size):
                if not await self._apply_retrying(tp, records[start : start + self.batch_size]):
                    return  # the partition was lost: its new owner reads the rest
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # run() raises it at its next poll; the supervisor restarts the consumer.
            if self._failure is None:
                self._failure = exc
        finally:
            if self._workers.get(tp) is me:
                del self._workers[tp]
                self.consumer.resume([tp])

    async def _apply_retrying(self, tp: TopicPartition, records: Sequence[Record]) -> bool:
        """Apply and commit a chunk, retrying transient failures; False if ``tp`` was lost."""
        began = time.monotonic()
        try:
            async for attempt in transient_retries(
                self.outage,
                max_s=self.retry_max_s,
                backoff_s=self.retry_backoff_s,
                max_wait_s=MAX_RETRY_WAIT_S,
                on_retry=TRANSIENT_RETRIES.labels(self.service, self.group).inc,
            ):
                with attempt:
                    raise_if_cancelled()
                    began = time.monotonic()
                    # The slot and the partition are held only while trying, not while
                    # waiting: other partitions go on and a rebalance need not wait.
                    async with self._slots, self.consumer.batch(tp) as owned:
                        if not owned:
                            return False
                        await self._apply_chunk(records)
                        await self.consumer.commit({tp: records[-1].offset + 1})
        except Exception as exc:
            if is_transient(exc):
                log.error(
                    "%s: %s[%d] still failing after %.0f s (%s); stopping for a restart",
                    self.group,
                    tp[0],
                    tp[1],
                    self.retry_max_s,
                    describe(exc),
                )
            raise
        finally:
            self._dead.difference_update((r.topic, r.partition, r.offset) for r in records)
        self.outage.recovered(began)
        return True

    async def _apply_chunk(self, records: Sequence[Record]) -> None:
        """Dead-letter poison, apply the rest in one transaction, isolate a failing event."""
        pending: list[_Decoded] = []
        for record in records:
            if (record.topic, record.partition, record.offset) in self._dead:
                continue
            try:
                pending.append((record, from_kafka(record.key, record.value, record.headers)))
            except DecodeError as exc:
                # Invalid bytes stay invalid: no point in retrying.
                await self._dead_letter(record, f"undecodable event: {exc}", attempts=1)
        while pending:
            try:
                async with self.database.transaction() as session:
                    applied, duplicates = await self._apply(session, pending)
            except EventRejected as exc:
                refused = [p for p in pending if p[1].id == exc.event_id]
                if not refused:
                    break  # the batch handler did not say which: find it one by one
                await self._dead_letter(
                    refused[0][0], f"rejected: {exc.reason}", attempts=1, event_id=exc.event_id
                )
                pending = [p for p in pending if p[1].id != exc.event_id]
                continue
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.warning(
                    "%s: chunk of %d failed (%s); applying its events one at a time",
                    self.group,
                    len(pending),
                    describe(exc),
                )
                break
            self._count(pending[0][0].topic, applied, duplicates)
            return
        for one in pending:
            await self._apply_alone(one)

    async def _apply(self, session: AsyncSession, events: Sequence[_Decoded]) -> tuple[int, int]:
        """Record the new events among ``events`` in the inbox and hand them to the handler.

        Returns how many were applied and how many were duplicates.
        """
        unique: dict[str, _Decoded] = {}
        for record, envelope in events:
            unique.setdefault(envelope.id, (record, envelope))  # the same event twice
        new_ids = await inbox.record_new(
            session, self.group, [(e.id, r.topic) for r, e in unique.values()]
        )
        fresh = [(r, e) for r, e in unique.values() if e.id in new_ids]
        topic = events[0][0].topic
        counts = (len(fresh), len(events) - len(fresh))
        if not fresh:
            return counts
        batch_handler = self.subscription.batch_handler
        if batch_handler is not None:
            # Log lines name the chunk's tenant when it has one (each chunk has its own task).
            tenants = {e.tenant for _, e in fresh}
            logs.TENANT.set(tenants.pop() if len(tenants) == 1 else None)
            first = fresh[0][0]
            # Attributes only for a span that is recorded: with tracing off this is per chunk.
            attributes = (
                {
                    "messaging.batch.message_count": len(fresh),
                    "messaging.destination.partition.id": str(first.partition),
                    "cloudevents.event_type": sorted({e.type for _, e in fresh}),
                }
                if tracing_enabled()
                else {}
            )
            with batch_span(
                topic,
                self.group,
                [r.headers for r, _ in fresh],  # linked, every one
                **attributes,
            ):
                await batch_handler(session, [e for _, e in fresh])
            return counts
        handler = self.subscription.handler
        assert handler is not None  # one of them is set (Subscription checks)
        for record, envelope in fresh:
            logs.TENANT.set(envelope.tenant)
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
                try:
                    await handler(session, envelope)
                except EventRejected as exc:
                    if exc.event_id is None:
                        raise EventRejected(exc.reason, envelope.id) from exc
                    raise
        return counts

    def _count(self, topic: str, applied: int, duplicates: int) -> None:
        if applied:
            EVENTS_CONSUMED.labels(self.service, self.group, topic, "applied").inc(applied)
        if duplicates:
            EVENTS_CONSUMED.labels(self.service, self.group, topic, "duplicate").inc(duplicates)

    async def _apply_alone(self, one: _Decoded) -> None:
        """One event in its own transaction, with ``max_attempts`` quick tries."""
        record, envelope = one
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self.database.transaction() as session:
                    applied, duplicates = await self._apply(session, [one])
                self._count(record.topic, applied, duplicates)
                return
            except EventRejected as exc:
                await self._dead_letter(
                    record, f"rejected: {exc.reason}", attempts=attempt, event_id=envelope.id
                )
                return
            except Exception as exc:
                if is_transient(exc):
                    raise  # not the event's fault: the whole chunk waits and retries
                error = describe(exc)
                log.warning(
                    "%s: event %s failed (attempt %d/%d): %s",
                    self.group,
                    envelope.id,
                    attempt,
                    self.max_attempts,
                    error,
                )
                if attempt == self.max_attempts:
                    await self._dead_letter(record, error, attempts=attempt, event_id=envelope.id)
                    return
                await asyncio.sleep(min(self.retry_backoff_s * 2 ** (attempt - 1), 2.0))

    async def _dead_letter(
        self, record: Record, reason: str, *, attempts: int, event_id: str | None = None
    ) -> None:
        """Publish the record to ``<topic>.dlq`` with why and how often it failed.

        A failed publish raises out of ``run()``: the record is not committed, so the
        restarted consumer reads it again.
        """
        event_id = (
            event_id
            or record.header("ce_id")
            or f"{record.topic}/{record.partition}/{record.offset}"
        )[:200]
        # A reason may quote the hostile input (a 200,000-character "currency"): the log
        # line and the header get its head only.
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 1] + "…"
        headers = [
            *record.headers,
            ("dlq_reason", reason.encode()),
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
        self._dead.add((record.topic, record.partition, record.offset))
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
        EVENTS_CONSUMED.labels(self.service, self.group, record.topic, "dead_lettered").inc()
        EVENTS_DEAD_LETTERED.labels(self.service, self.group, record.topic).inc()
        try:
            async with self.database.transaction() as session:
                await inbox.record_dead(session, self.group, event_id, record.topic)
        except Exception as exc:
            # Only a note for operators: the offset commit is what moves past the record.
            log.warning("%s: could not note %s as dead-lettered: %s", self.group, event_id, exc)
