"""Sending: exactly one send per request, retries that never hold the consumer.

The consumer records each request as ``pending`` (its idempotency key) and commits;
this module sends. A pass claims the notices due at the service clock (``due_at``
is the request's ``not_before`` or its arrival) under a lease, and sends each in its
own task, at most ``delivery_concurrency`` at once:

1. Before the send, one transaction records that an attempt begins
   (``send_started_at``, ``attempts``) and renews the lease.
2. The channel sends.
3. After it, one transaction records the outcome and stages ``NotificationSent`` or
   ``NotificationFailed`` in the outbox (with the request's trace).

Temporary failures are retried with exponential backoff and jitter (tenacity),
bounded by the wall-clock time since the first attempt (``delivery_retry_max_s``);
permanent ones are not. A notice whose result was never recorded still has
``send_started_at`` when its lease expires: its process died between 1 and 3, so it
may have gone out. It is sent once more, marked ``possible_duplicate``; if that send
is interrupted too it is failed rather than risk a second duplicate
(``domain.plan_send``). The email keeps its Message-ID and a webhook its
``Idempotency-Key``, so the receiving side can recognise the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import formataddr, parseaddr
from typing import Any, Literal, get_args

import httpx
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from prometheus_client import Counter, Histogram
from sqlalchemy import event, insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from dunning_events.common import Channel as ChannelName
from dunning_runtime.app import Runtime
from dunning_runtime.db import utc
from dunning_runtime.errors import Outage, is_transient
from dunning_runtime.locks import lock_account
from dunning_runtime.telemetry import context_from_headers, tracer
from notify_svc import domain, events, storage
from notify_svc.channels import (
    Channel,
    DeliveryFailure,
    Outgoing,
    PermanentFailure,
    TemporaryFailure,
)
from notify_svc.channels.email import EmlDirectory, SmtpChannel
from notify_svc.channels.sms import SmsDirectory, SmsGateway
from notify_svc.channels.task import task_row
from notify_svc.channels.webhook import WebhookChannel
from notify_svc.settings import NotifySettings
from notify_svc.storage import tasks

log = logging.getLogger(__name__)

SENDS = Counter(
    "dunning_notifications_total",
    "Notices by channel and outcome (sent, failed, retried, possible_duplicate, suppressed)",
    ["channel", "outcome"],
)
SEND_DURATION = Histogram(
    "dunning_notification_send_duration_seconds",
    "One attempt to hand a notice to its channel (SMTP server, SMS gateway, webhook), by "
    "outcome: sent, retried (a temporary failure), failed",
    ["channel", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# Every channel's outcomes exist from the start at 0: a rate over the first notice (the
# first failure on a dashboard) needs a sample from before it.
for _channel in get_args(ChannelName):
    for _outcome_name in ("sent", "failed", "retried", "possible_duplicate", "suppressed"):
        SENDS.labels(_channel, _outcome_name)


def count_suppressed_on_commit(session: AsyncSession, channels: list[str]) -> None:
    """Count notices suppressed on ``channels`` once the transaction commits, so a chunk
    retried after a failure counts them once."""
    if not channels:
        return
    counts = Tally(channels)

    def count(_session: Any) -> None:
        for channel, n in counts.items():
            SENDS.labels(channel, "suppressed").inc(n)

    event.listen(session.sync_session, "after_commit", count, once=True)


#: How often the worker looks for due notices when nothing wakes it.
POLL_S = 1.0


def wall_now() -> datetime:
    """Wall-clock time: leases and backoff wait for remote servers, not for the service's
    (possibly manual) business clock."""
    return datetime.now(UTC)


class Delivery:
    """Sends a service's due notices; ``run`` is its supervised worker loop."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        assert isinstance(settings, NotifySettings)
        self.runtime = runtime
        self.settings = settings
        self.owner = uuid.uuid4().hex
        self.wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.delivery_concurrency)
        # The worker and a tick both claim: one claim at a time, or both would take the
        # same rows (they share the owner id) and send them twice.
        self._claiming = asyncio.Lock()
        self.outage = Outage("notify-svc delivery", log)
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        #: One pool of HTTP connections for SMS and webhooks (building a client loads the
        #: CA bundle: far too slow per notice).
        self.http = httpx.AsyncClient(follow_redirects=False)

    def wake(self) -> None:
        """Look for due notices now (a consumer just recorded some)."""
        self.wakeup.set()

    async def run(self) -> None:
        """Send due notices as they become due, until cancelled."""
        try:
            while True:
                self.wakeup.clear()
                began = time.monotonic()
                try:
                    await self._start_due()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    # The database is away: the sends in hand go on; claim again later.
                    self.outage.failed(exc)
                else:
                    self.outage.recovered(began)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), POLL_S)
        finally:
            await self._cancel_in_flight()
            await self.http.aclose()

    async def deliver_due(self) -> int:
        """Send every notice due now and wait for their outcomes (for ``POST
        /v1/admin/tick``); returns how many were taken."""
        total = 0
        while True:
            started = await self._start_due()
            total += len(started)
            if not started:
                break
            await asyncio.gather(*started, return_exceptions=True)
        # Also wait for what the worker had already taken.
        if self._in_flight:
            await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)
        return total

    async def _cancel_in_flight(self) -> None:
        tasks_ = list(self._in_flight.values())
        for task in tasks_:
            task.cancel()
        if tasks_:
            await asyncio.gather(*tasks_, return_exceptions=True)

    async def _start_due(self) -> list[asyncio.Task[None]]:
        """Claim due notices (as many as there are free slots) and start a task for each."""
        async with self._claiming:
            return await self._claim_and_start()

    async def _claim_and_start(self) -> list[asyncio.Task[None]]:
        room = self.settings.delivery_concurrency * 2 - len(self._in_flight)
        if room <= 0:
            return []
        wall = wall_now()
        until = wall + timedelta(seconds=self._lease_s())
        async with self.runtime.database.transaction() as session:
            seqs = await storage.due_seqs(session, self.runtime.clock.now(), wall, room)
            seqs = [s for s in seqs if s not in self._in_flight]
            rows = await storage.claim(session, seqs, self.owner, wall, until)
            profiles = await storage.profiles_of(session, {r["tenant"] for r in rows})
        started = []
        for row in rows:
            if row["seq"] in self._in_flight:
                continue  # still being sent here (its lease ran out between attempts)
            task = asyncio.create_task(
                self._deliver(row, profiles.get(row["tenant"], {})),
                name=f"notify-send-{row['notification_id']}",
            )
            self._in_flight[row["seq"]] = task
            task.add_done_callback(self._forget(row["seq"]))
            started.append(task)
        return started

    def _forget(self, seq: int) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._in_flight.pop(seq, None)
            self.wakeup.set()  # a slot is free: take the next due notice now

        return forget

    def _lease_s(self) -> float:
        # The setting as it is documented: renewed as each attempt begins, it covers the
        # attempt and the wait before the next (NotifySettings refuses a shorter one).
        return self.settings.delivery_lease_s

    async def _deliver(self, row: RowMapping, profile: dict[str, Any]) -> None:
        async with self._slots:
            try:
                with _continued_trace(row):
                    await self._deliver_one(row, profile)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The lease expires and a later pass takes the notice over.
                log.exception("notify-svc: delivering %s failed", row["notification_id"])

    async def _deliver_one(self, row: RowMapping, profile: dict[str, Any]) -> None:
        plan = domain.plan_send(
            interrupted=row["send_started_at"] is not None,
            possible_duplicate=row["possible_duplicate"],
        )
        if plan == "give_up":
            _outcome("failed_permanently", row["attempts"])
            await self._failed(
                row,
                "two sends were interrupted before their outcome was recorded; the notice "
                "may have been delivered and is not sent a third time",
                permanent=True,
                attempts=row["attempts"],
            )
            return
        duplicate = plan == "send_possible_duplicate" or row["possible_duplicate"]
        if duplicate and not row["possible_duplicate"]:
            SENDS.labels(row["channel"], "possible_duplicate").inc()
            log.warning(
                "notify-svc: %s/%s was interrupted between send and record; sending it once "
                "more, marked as a possible duplicate",
                row["tenant"],
                row["notification_id"],
            )
        message = outgoing(row, profile, self.settings, self.runtime.clock.now())
        if row["channel"] == "task":
            _outcome(await self._open_task(row, message), row["attempts"] + 1)
            return
        first = utc(row["first_attempt_at"]) or wall_now()
        budget = self.settings.delivery_retry_max_s - (wall_now() - first).total_seconds()
        attempts = row["attempts"]
        if self.http.is_closed:  # the worker was restarted by its supervisor
            self.http = httpx.AsyncClient(follow_redirects=False)
        channel = self._channel(row["channel"], self.http)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TemporaryFailure),
                wait=wait_random_exponential(
                    multiplier=self.settings.delivery_backoff_s,
                    max=self.settings.delivery_backoff_max_s,
                ),
                stop=stop_after_delay(max(0.0, budget)),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    begun = await self._begin(row, attempts, first, duplicate)
                    if begun != "begun":
                        # held, superseded, suppressed meanwhile, or taken over
                        _outcome(begun)
                        return
                    receipt = await self._send(channel, message, row, attempts)
                    await self._sent(row, receipt.provider_message_id, attempts)
                    _outcome("sent", attempts)
        except PermanentFailure as exc:
            _outcome("failed_permanently", attempts)
            await self._failed(row, str(exc), permanent=True, attempts=attempts)
        except TemporaryFailure as exc:
            _outcome("failed", attempts)
            await self._failed(
                row,
                f"gave up after {attempts} attempts: {exc}",
                permanent=False,
                attempts=attempts,
            )

    async def _send(
        self, channel: Channel, message: Outgoing, row: RowMapping, attempts: int
    ) -> Any:
        began = time.perf_counter()
        outcome = "failed"
        try:
            receipt = await channel.send(message)
            outcome = "sent"
            return receipt
        except TemporaryFailure as exc:
            outcome = "retried"
            SENDS.labels(row["channel"], "retried").inc()
            log.info("notify-svc: %s attempt %d: %s", row["notification_id"], attempts, exc)
            await self._record_attempt_failed(row, str(exc))
            raise
        except DeliveryFailure:
            raise
        except Exception as exc:
            # A channel bug must not look like a send that may have happened.
            await self._record_attempt_failed(row, f"{type(exc).__name__}: {exc}")
            raise PermanentFailure(f"{type(exc).__name__}: {exc}") from exc
        finally:
            SEND_DURATION.labels(row["channel"], outcome).observe(time.perf_counter() - began)

    def _channel(self, name: str, client: httpx.AsyncClient) -> Channel:
        settings = self.settings
        outbox = settings.data_dir / "outbox"
        if name == "email":
            return SmtpChannel(settings) if settings.smtp_url else EmlDirectory(outbox / "email")
        if name == "sms":
            if not settings.sms_url:
                return SmsDirectory(outbox / "sms")
            token = settings.sms_token.get_secret_value()
            return SmsGateway(client, settings.sms_url, token, settings.http_timeout_s)
        secrets = {t: s.get_secret_value() for t, s in settings.outgoing_webhook_secrets.items()}
        return WebhookChannel(client, secrets, settings.http_timeout_s)

    # -- bookkeeping, one short transaction each -------------------------------------

    async def _begin(
        self, row: RowMapping, attempts: int, first: datetime, duplicate: bool
    ) -> Begun:
        """Record that a send begins (before it happens) and renew the lease, once the
        send-time rule allows it (``domain.at_send_time``)."""
        wall = wall_now()
        async with self.runtime.database.transaction() as session:
            gate = await self._gate(session, row, wall)
            if gate != "begun":
                return gate
            begun = await storage.update_owned(
                session,
                row["seq"],
                self.owner,
                send_started_at=wall,
                attempts=attempts,
                first_attempt_at=first,
                possible_duplicate=duplicate,
                lease_until=wall + timedelta(seconds=self._lease_s()),
                updated_at=self.runtime.clock.now(),
            )
            return "begun" if begun else "not_begun"

    async def _gate(self, session: AsyncSession, row: RowMapping, wall: datetime) -> Begun:
        """The stage order and the contact cap, checked again as the send begins (under
        the account's lock, so two notices of one account pass it one at a time): a
        notice taken over late, or retried for long, must not go out after the next
        stage's notice, nor within the cap of another. "begun" lets it go ahead."""
        now = self.runtime.clock.now()
        await lock_account(session, row["tenant"], row["account_id"])
        request = row["request"]
        not_before = request.get("not_before")
        decision = domain.at_send_time(
            stage_sequence=row["stage_sequence"],
            stage=row["stage"],
            not_before=datetime.fromisoformat(not_before) if not_before else None,
            contact_cap_days=int(request.get("contact_cap_days") or 0),
            contacts=await storage.contacts_of(session, row, wall, now),
            now=now,
        )
        if isinstance(decision, domain.Send):
            return "begun"
        if isinstance(decision, domain.Hold):
            # Back to the queue, due again when the hold ends; an interrupted send keeps
            # its send_started_at, so it still goes out marked as a possible duplicate.
            # The retry budget starts again then: the hold was no failure to deliver.
            await storage.update_owned(
                session,
                row["seq"],
                self.owner,
                due_at=decision.until,
                first_attempt_at=None,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            log.info("notify-svc: %s held: %s", row["notification_id"], decision.why)
            return "held"
        if await storage.update_owned(
            session,
            row["seq"],
            self.owner,
            status="suppressed",
            reason="obsolete",
            error=decision.detail,
            send_started_at=None,
            lease_until=None,
            updated_at=now,
        ):
            event = events.suppressed(row, "obsolete", decision.detail)
            await self.runtime.outbox.add(session, events.envelope(row["tenant"], event, now, row))
            count_suppressed_on_commit(session, [row["channel"]])
        return "superseded"

    async def _record_attempt_failed(self, row: RowMapping, error: str) -> None:
        """The provider refused: nothing went out, so the next attempt is no duplicate."""
        async with self.runtime.database.transaction() as session:
            await storage.update_owned(
                session, row["seq"], self.owner, send_started_at=None, error=error[:2000]
            )

    async def _sent(self, row: RowMapping, provider_id: str | None, attempts: int) -> None:
        now = self.runtime.clock.now()
        async with self.runtime.database.transaction() as session:
            await lock_account(session, row["tenant"], row["account_id"])
            if await storage.update_owned(
                session,
                row["seq"],
                self.owner,
                status="sent",
                sent_at=now,
                provider_message_id=provider_id,
                send_started_at=None,
                lease_until=None,
                error=None,
                updated_at=now,
            ):
                event = events.sent(row, now, provider_id)
                await self.runtime.outbox.add(
                    session, events.envelope(row["tenant"], event, now, row)
                )
        SENDS.labels(row["channel"], "sent").inc()

    async def _failed(self, row: RowMapping, error: str, *, permanent: bool, attempts: int) -> None:
        now = self.runtime.clock.now()
        async with self.runtime.database.transaction() as session:
            await lock_account(session, row["tenant"], row["account_id"])
            if await storage.update_owned(
                session,
                row["seq"],
                self.owner,
                status="failed",
                error=error[:2000],
                permanent=permanent,
                send_started_at=None,
                lease_until=None,
                updated_at=now,
            ):
                event = events.failed(row, error, attempts, permanent=permanent)
                await self.runtime.outbox.add(
                    session, events.envelope(row["tenant"], event, now, row)
                )
        SENDS.labels(row["channel"], "failed").inc()
        log.warning("notify-svc: %s failed: %s", row["notification_id"], error)

    async def _open_task(self, row: RowMapping, message: Outgoing) -> str:
        """Open the collector's task and record the notice as sent, in one transaction,
        once the send-time rule allows it; returns the outcome."""
        now = self.runtime.clock.now()
        async with self.runtime.database.transaction() as session:
            gate = await self._gate(session, row, wall_now())
            if gate != "begun":
                return gate
            if not await storage.update_owned(
                session,
                row["seq"],
                self.owner,
                status="sent",
                sent_at=now,
                attempts=row["attempts"] + 1,
                lease_until=None,
                updated_at=now,
            ):
                return "not_begun"
            exists = await session.scalar(
                select(tasks.c.seq).where(
                    tasks.c.tenant == row["tenant"], tasks.c.task_id == row["notification_id"]
                )
            )
            if exists is None:
                await session.execute(insert(tasks).values(task_row(message, row, now)))
            event = events.sent(row, now, row["notification_id"])
            await self.runtime.outbox.add(session, events.envelope(row["tenant"], event, now, row))
        SENDS.labels("task", "sent").inc()
        return "sent"


#: What came of recording that a send begins: it began, or it did not (the send-time
#: rule held or superseded it, or the notice is no longer this instance's).
Begun = Literal["begun", "held", "superseded", "not_begun"]

_ATTRIBUTE = "_notify_delivery"


def attach(runtime: Runtime) -> Delivery:
    """Make the runtime's delivery worker (once, at start)."""
    delivery = Delivery(runtime)
    setattr(runtime, _ATTRIBUTE, delivery)
    return delivery


def delivery_of(runtime: Runtime) -> Delivery:
    """The runtime's delivery worker."""
    delivery: Delivery = getattr(runtime, _ATTRIBUTE)
    return delivery


def outgoing(
    row: RowMapping | dict[str, Any],
    profile: dict[str, Any],
    settings: NotifySettings,
    now: datetime,
) -> Outgoing:
    """The message a stored notice sends: From the tenant's company name at the
    configured sender address, Reply-To the tenant's contact email."""
    display, address = parseaddr(settings.mail_from)
    name = profile.get("company_name") or display
    request = row["request"]
    return Outgoing(
        tenant=row["tenant"],
        notification_id=row["notification_id"],
        channel=row["channel"],
        to=row["to_address"] or "",
        cc=tuple(row["cc"] or ()),
        subject=row["subject"] or "",
        text=row["body_text"] or "",
        html=row["body_html"] or "",
        sms=row["body_sms"] or "",
        message_id=row["message_id"],
        sender=formataddr((name, address)) if name else address,
        reply_to=profile.get("email"),  # the defaults have no contact email
        date=now,
        payload={
            "type": "dunning.notification",
            "tenant": row["tenant"],
            "notification_id": row["notification_id"],
            "account_id": row["account_id"],
            "stage": row["stage"],
            "template": row["template"],
            "subject": row["subject"],
            "text": row["body_text"],
            "request": request,
        },
    )


@contextlib.contextmanager
def _continued_trace(row: RowMapping) -> Iterator[None]:
    """A span for the send, in the trace of the request (stored with the notice)."""
    headers = [
        (name, value.encode())
        for name, value in (("traceparent", row["traceparent"]), ("tracestate", row["tracestate"]))
        if value
    ]
    # Ids, channel and stage only: never the address, the name or the message.
    with tracer().start_as_current_span(
        "notify send",
        context=context_from_headers(headers),
        attributes={
            "dunning.tenant": row["tenant"],
            "dunning.account_id": row["account_id"],
            "dunning.notification_id": row["notification_id"],
            "dunning.channel": row["channel"],
            "dunning.stage": row["stage"],
            "dunning.outcome": "interrupted",  # until one of the outcomes below is set
        },
    ):
        yield


def _outcome(outcome: str, attempts: int | None = None) -> None:
    """Note the send's outcome (sent, failed, failed_permanently, not_begun) on its span."""
    span = trace.get_current_span()
    span.set_attribute("dunning.outcome", outcome)
    if attempts is not None:
        span.set_attribute("dunning.attempts", attempts)
    if outcome.startswith("failed"):
        span.set_status(Status(StatusCode.ERROR, outcome))
