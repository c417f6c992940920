"""The transactional outbox (principle 2).

A service writes its state change and the events it causes in one database
transaction (``Outbox.add``); the ``OutboxRelay`` publishes them afterwards.
If the process dies between commit and publish, the rows are still there and
the next relay publishes them: at-least-once, made idempotent by the inbox.

Order: the relay publishes one service's rows in id order, one batch at a time,
and only one relay per service is active (a lease row, taken over at once when the
process holding it is gone: ``dunning_runtime.liveness``), so one key's events
reach the bus in the order they were written. Rows are deleted once published,
so a late-committing transaction is never skipped: its rows are simply picked
up by a later pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope
from dunning_events.codec import KafkaMessage, to_kafka
from dunning_events.envelope import assemble
from dunning_runtime.bulk import copy_rows, driver_connection
from dunning_runtime.bus.port import Bus, OutgoingMessage
from dunning_runtime.db import Database, on_commit
from dunning_runtime.errors import Outage, raise_if_cancelled, transient_retries
from dunning_runtime.liveness import Liveness
from dunning_runtime.messaging_tables import outbox, relay_lease
from dunning_runtime.metrics import EVENTS_PUBLISHED
from dunning_runtime.staging import staged_row
from dunning_runtime.telemetry import current_trace_headers, publish_spans

log = logging.getLogger(__name__)

#: The columns ``Outbox.add`` writes.
_ADDED = ("event_id", "topic", "key", "value", "headers", "created_at")


def encode_headers(headers: list[tuple[str, bytes]]) -> str:
    """Headers as JSON text (bytes kept losslessly through latin-1)."""
    # The text json.dumps([[name, value], ...]) writes, one pair at a time: most pairs
    # repeat from event to event (type, source, tenant, ...), so their text is kept.
    kept = _HEADER_JSON.get
    try:
        parts = [kept(pair) or _header_json(pair) for pair in headers]
    except TypeError:  # an unhashable pair (a bytearray value): nothing to keep
        parts = [json.dumps([name, value.decode("latin-1")]) for name, value in headers]
    return "[" + ", ".join(parts) + "]"


# Headers whose values differ from event to event, not worth keeping: the text before
# their value.
_VARYING = {
    name: f"[{json.dumps(name)}, "
    for name in (
        "ce_id",
        "ce_subject",
        "ce_traceparent",
        "ce_tracestate",
        "traceparent",
        "tracestate",
    )
}
_HEADER_JSON: dict[tuple[str, bytes], str] = {}


def _header_json(pair: tuple[str, bytes]) -> str:
    name, value = pair
    if type(name) is not str or type(value) is not bytes:
        return json.dumps([name, value.decode("latin-1")])
    opening = _VARYING.get(name)
    if opening is not None:
        # What json.dumps writes for a str with its default ensure_ascii.
        return opening + encode_basestring_ascii(value.decode("latin-1")) + "]"
    text = json.dumps([name, value.decode("latin-1")])
    if len(_HEADER_JSON) >= 4096:
        _HEADER_JSON.clear()
    _HEADER_JSON[pair] = text
    return text


def decode_headers(text: str) -> list[tuple[str, bytes]]:
    """The reverse of ``encode_headers``."""
    return [(k, v.encode("latin-1")) for k, v in json.loads(text)]


class Outbox:
    """Writes events into the outbox inside the caller's transaction."""

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()

    async def add(self, session: AsyncSession, *envelopes: Envelope) -> list[KafkaMessage]:
        """Stage events in ``session``'s transaction; the relay wakes when it commits.

        Returns the messages as they will be published, in order, so a caller that also
        records an event (an audit trail) can keep the very bytes instead of encoding
        the event a second time.
        """
        rows, messages = outbox_rows(envelopes, current_trace_headers(), datetime.now(UTC))
        if rows:
            await _insert(session, rows)
            if not session.info.get("outbox_wake"):
                session.info["outbox_wake"] = True
                on_commit(session, self.wakeup.set)
        return messages


_TRACE_FIELDS = frozenset(("traceparent", "tracestate"))


def outbox_rows(
    envelopes: tuple[Envelope, ...] | list[Envelope],
    trace_headers: Mapping[str, str],
    now: datetime,
) -> tuple[list[dict[str, Any]], list[KafkaMessage]]:
    """The outbox rows of ``envelopes`` written at ``now``, and the messages they hold.

    An envelope without trace context gets the current one (``trace_headers``, as
    ``current_trace_headers`` gives it), so the events continue the caller's trace.
    """
    rows = []
    messages = []
    traceparent = trace_headers.get("traceparent")
    tracestate = trace_headers.get("tracestate")
    for envelope in envelopes:
        # Events of one kind share a template of their headers (staging.py).
        row, message = staged_row(envelope, traceparent, tracestate, now, _plain_record)
        rows.append(row)
        messages.append(message)
    return rows, messages


def _plain_record(
    envelope: Envelope, traceparent: str | None, tracestate: str | None
) -> tuple[KafkaMessage, str]:
    """The message of ``envelope`` with this trace context, and its header JSON."""
    if envelope.traceparent is None and traceparent is not None:
        # model_copy(update=...) without its generic steps: the same envelope.
        envelope = assemble(
            {**envelope.__dict__, "traceparent": traceparent, "tracestate": tracestate},
            envelope.__pydantic_fields_set__ | _TRACE_FIELDS,
        )
    message = to_kafka(envelope)
    return message, encode_headers(message.headers)


async def _insert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """The staged rows in one statement, ids in row order: a binary ``COPY`` on
    PostgreSQL, a Core executemany on SQLite."""
    driver = await driver_connection(session)
    if driver is None:
        await session.execute(insert(outbox), rows)
    else:
        await copy_rows(driver, outbox, _ADDED, rows)


class OutboxRelay:
    """Publishes a service's outbox rows in order, waking as soon as a transaction commits."""

    def __init__(
        self,
        database: Database,
        bus: Bus,
        outbox_: Outbox,
        *,
        service: str,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        lease_s: float = 15.0,
        retry_max_s: float = 300.0,
        liveness: Liveness | None = None,
    ) -> None:
        self.database = database
        self.bus = bus
        self.outbox = outbox_
        self.service = service
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.lease = timedelta(seconds=lease_s)
        self.retry_max_s = retry_max_s
        #: Without a liveness check, a dead instance's lease holds until it expires.
        self.liveness = liveness
        self.owner = liveness.instance_id if liveness is not None else str(uuid.uuid4())
        self.outage = Outage(f"{service} relay", log)
        self._flush_lock = asyncio.Lock()
        #: Until when (monotonic) the lease we last wrote is certainly still ours without
        #: asking the database again: a third of its length after the write.
        self._held_until = 0.0

    async def run(self) -> None:
        """Publish until cancelled.

        A transient failure (broker or database away) is retried with exponential
        backoff and jitter, logged once per outage; past ``retry_max_s``, or on any
        other error, it raises and the supervisor restarts it.
        """
        while True:
            raise_if_cancelled()
            self.outbox.wakeup.clear()
            began = time.monotonic()
            async for attempt in transient_retries(
                self.outage, max_s=self.retry_max_s, backoff_s=0.2, max_wait_s=5.0
            ):
                with attempt:
                    began = time.monotonic()
                    await self.flush()
            self.outage.recovered(began)
            # The poll interval only matters for rows written by other processes.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.wakeup.wait(), self.poll_interval_s)

    async def flush(self) -> int:
        """Publish every pending row now; returns how many were published."""
        total = 0
        async with self._flush_lock:
            while True:
                if not await self._hold_lease():
                    return total
                count = await self._publish_batch()
                total += count
                if count < self.batch_size:
                    return total

    async def _publish_batch(self) -> int:
        async with self.database.sessions() as session:
            rows = (
                await session.execute(
                    select(
                        outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.value, outbox.c.headers
                    )
                    .order_by(outbox.c.id)
                    .limit(self.batch_size)
                )
            ).all()
            await session.rollback()
        if not rows:
            return 0
        messages = [
            OutgoingMessage(
                topic=r.topic,
                key=bytes(r.key),
                value=bytes(r.value),
                headers=decode_headers(r.headers),
            )
            for r in rows
        ]
        # One producer span per event, in the trace of the span that caused it.
        with publish_spans(messages) as traced:
            await self.bus.publish(traced)
        async with self.database.transaction() as session:
            await session.execute(delete(outbox).where(outbox.c.id.in_([r.id for r in rows])))
        published: dict[str, int] = {}
        for r in rows:
            published[r.topic] = published.get(r.topic, 0) + 1
        for topic, count in published.items():
            EVENTS_PUBLISHED.labels(self.service, topic).inc(count)
        return len(rows)

    async def _hold_lease(self) -> bool:
        """Take or renew the relay lease, or take it over from an instance that is gone.

        The lease's expiry is wall-clock time and only the fallback: a restarted
        instance takes over at once what its dead predecessor held, instead of
        stalling every event of the service until the lease runs out.
        """
        # A lease written less than a third of its length ago still has two thirds to
        # run: no round trip for it (at a commit a second, one transaction less each).
        # Only expiry or our death (liveness) lets another instance take it meanwhile.
        if time.monotonic() < self._held_until:
            return True
        now = datetime.now(UTC)
        if await self._take_or_renew(now):
            return True
        if self.liveness is None:
            return False
        async with self.database.sessions() as session:
            holder = (
                await session.execute(
                    select(relay_lease.c.owner).where(relay_lease.c.name == "outbox")
                )
            ).scalar_one_or_none()
            await session.rollback()
        if holder is None:
            return await self._take_or_renew(now)  # released in between
        if await self.liveness.alive(holder):
            return False
        async with self.database.transaction() as session:
            result = await session.execute(
                update(relay_lease)
                .where(relay_lease.c.name == "outbox", relay_lease.c.owner == holder)
                .values(owner=self.owner, expires_at=now + self.lease)
            )
        if result.rowcount:  # type: ignore[attr-defined]
            log.info(
                "%s: took over the relay lease of instance %s, which is gone", self.service, holder
            )
            self._wrote_lease()
            return True
        return False

    def _wrote_lease(self) -> None:
        self._held_until = time.monotonic() + self.lease.total_seconds() / 3

    async def _take_or_renew(self, now: datetime) -> bool:
        """Renew our lease or take an expired or free one; False while another holds it."""
        async with self.database.transaction() as session:
            result = await session.execute(
                update(relay_lease)
                .where(relay_lease.c.name == "outbox")
                .where((relay_lease.c.owner == self.owner) | (relay_lease.c.expires_at < now))
                .values(owner=self.owner, expires_at=now + self.lease)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                self._wrote_lease()
                return True
        try:
            async with self.database.transaction() as session:
                await session.execute(
                    insert(relay_lease).values(
                        name="outbox", owner=self.owner, expires_at=now + self.lease
                    )
                )
            self._wrote_lease()
            return True
        except IntegrityError:
            return False  # another instance's relay holds it

    async def release_lease(self) -> None:
        """Give the lease up at a stop, so another instance's relay (or the next start)
        publishes what is left at once instead of waiting for the lease to expire."""
        self._held_until = 0.0
        async with self.database.transaction() as session:
            await session.execute(
                delete(relay_lease).where(
                    relay_lease.c.name == "outbox", relay_lease.c.owner == self.owner
                )
            )

    async def pending(self) -> int:
        """Rows waiting to be published."""
        from sqlalchemy import func

        async with self.database.sessions() as session:
            return int(
                (await session.execute(select(func.count()).select_from(outbox))).scalar_one()
            )
