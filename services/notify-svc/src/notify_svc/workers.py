"""The delivery worker: exactly one send per request, retries that never hold the consumer.

The consumer records each request as ``pending`` (its idempotency key) and commits;
this worker sends. A pass claims the notices due at the service clock (``due_at``
is the request's ``not_before`` or its arrival) under a lease, and sends each in its
own task, at most ``delivery_concurrency`` at once:

1. Before the send, one transaction records that an attempt begins
   (``send_started_at``, ``attempts``) and renews the lease.
2. The channel sends.
3. After it, one transaction records the outcome and stages ``NotificationSent`` or
   ``NotificationFailed`` in the outbox (with the request's trace).

Temporary failures are retried with exponential backoff and jitter (tenacity),
bounded by the wall-clock time since the first attempt (``domain.RetryPolicy``);
permanent ones are not. A notice whose result was never recorded still has
``send_started_at`` when its lease expires: its process died between 1 and 3, so it
may have gone out. It is sent once more, marked ``possible_duplicate``; if that send
is interrupted too it is failed rather than risk a second duplicate
(``domain.plan_send``). The email keeps its Message-ID and a webhook its
``Idempotency-Key``, so the receiving side can recognise the duplicate.

The bookkeeping of each step is ``commands.delivery``; steps 1 and 3 of the sends in
flight go in batches (``commands.batched``: those that arrive while a transaction runs
share the next one, begins and outcomes alike). A send holds its slot through its
attempts (steps 1 and 2 with no wait between them, so the lease renewed at 1 covers
2, and the backoff after a failed one); step 3 of the last follows outside it, beside
the next send's step 1. Emails go over SMTP connections kept open (``channels.smtp``).
This module holds the loop, the tasks in flight, the retries and the span of each send.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, cast

import httpx
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from sqlalchemy.engine import RowMapping
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from dunning_runtime.app import Runtime, WorkerSpec
from dunning_runtime.db import utc
from dunning_runtime.errors import Outage, is_transient
from dunning_runtime.telemetry import context_from_headers, tracer
from notify_svc import domain
from notify_svc.channels import (
    Channel,
    DeliveryFailure,
    Outgoing,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
)
from notify_svc.channels.email import EmlDirectory, SmtpChannel
from notify_svc.channels.sms import SmsDirectory, SmsGateway
from notify_svc.channels.smtp import SmtpConnections
from notify_svc.channels.webhook import WebhookChannel
from notify_svc.commands import batched
from notify_svc.commands import delivery as bookkeeping
from notify_svc.commands.delivery import Begun, log, wall_now
from notify_svc.metrics import SEND_DURATION, SENDS
from notify_svc.settings import NotifySettings

#: How often the worker looks for due notices when nothing wakes it.
POLL_S = 1.0


class Delivery:
    """Sends a service's due notices; ``run`` is its supervised worker loop."""

    def __init__(self, runtime: Runtime[NotifySettings]) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.settings = settings
        self.owner = uuid.uuid4().hex
        self.wakeup = asyncio.Event()
        self.retries = domain.RetryPolicy(
            max_s=settings.delivery_retry_max_s,
            backoff_s=settings.delivery_backoff_s,
            backoff_max_s=settings.delivery_backoff_max_s,
        )
        self._slots = asyncio.Semaphore(settings.delivery_concurrency)
        # The worker and a tick both claim: one claim at a time, or both would take the
        # same rows (they share the owner id) and send them twice.
        self._claiming = asyncio.Lock()
        self.outage = Outage("notify-svc delivery", log)
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        #: One pool of HTTP connections for SMS and webhooks (building a client loads the
        #: CA bundle: far too slow per notice).
        self.http = httpx.AsyncClient(follow_redirects=False)
        #: The SMTP connections, kept open across sends and closed when the worker stops.
        self.smtp = SmtpConnections(settings) if settings.smtp_url else None
        #: The steps of concurrent sends that arrive together (begins and outcomes alike)
        #: share one transaction.
        self._steps = batched.GroupCommit(self._step_batch)

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
                    await self._start_due(run=True)
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
            await self._steps.stop()
            await self.http.aclose()
            if self.smtp is not None:
                await self.smtp.close()

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

    async def _start_due(self, *, run: bool = False) -> list[asyncio.Task[None]]:
        """Claim due notices (as many as there are free slots) and start a task for each;
        the worker's loop (``run``) waits until half the slots are free, so its claims
        come in batches rather than one per finished send."""
        async with self._claiming:
            return await self._claim_and_start(run)

    async def _claim_and_start(self, run: bool) -> list[asyncio.Task[None]]:
        room = self.settings.delivery_concurrency * 2 - len(self._in_flight)
        if room <= 0 or (run and self._in_flight and room < self.settings.delivery_concurrency):
            return []
        rows, profiles = await bookkeeping.claim_due(
            self.runtime, self.owner, room, self._lease_s(), self._in_flight
        )
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
        try:
            with _continued_trace(row):
                async with self._slots:
                    ending = await self._deliver_one(row, profile)
                # The slot (an SMTP connection) is free once the send ended: the outcome
                # is recorded while the next send begins, in the same transaction.
                if ending is not None and ending.sent:
                    await self._sent(ending.row, ending.provider_id, ending.attempts)
                    _outcome("sent", ending.attempts)
                elif ending is not None:
                    await self._steps.submit(ending)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease expires and a later pass takes the notice over.
            log.exception("notify-svc: delivering %s failed", row["notification_id"])

    async def _deliver_one(
        self, row: RowMapping, profile: dict[str, Any]
    ) -> batched.Outcome | None:
        """Send the notice (with its retries); returns the outcome to record, if any."""
        plan = domain.plan_send(
            interrupted=row["send_started_at"] is not None,
            possible_duplicate=row["possible_duplicate"],
        )
        if plan == "give_up":
            _outcome("failed_permanently", row["attempts"])
            return _failed(row, domain.INTERRUPTED_TWICE, permanent=True, attempts=row["attempts"])
        duplicate = plan == "send_possible_duplicate" or row["possible_duplicate"]
        if duplicate and not row["possible_duplicate"]:
            SENDS.labels(row["channel"], "possible_duplicate").inc()
            log.warning(
                "notify-svc: %s/%s was interrupted between send and record; sending it once "
                "more, marked as a possible duplicate",
                row["tenant"],
                row["notification_id"],
            )
        message = bookkeeping.outgoing(row, profile, self.settings, self.runtime.clock.now())
        if row["channel"] == "task":
            opened = await bookkeeping.open_task(self.runtime, row, self.owner, message)
            _outcome(opened, row["attempts"] + 1)
            return None
        return await self._send_with_retries(row, message, duplicate)

    async def _send_with_retries(
        self, row: RowMapping, message: Outgoing, duplicate: bool
    ) -> batched.Outcome | None:
        """Attempt the send until it is sent, fails permanently or the retry budget ends;
        returns the outcome to record (None when the send did not begin)."""
        first = utc(row["first_attempt_at"]) or wall_now()
        budget = self.retries.budget(first, wall_now())
        attempts = row["attempts"]
        if self.http.is_closed:  # the worker was restarted by its supervisor
            self.http = httpx.AsyncClient(follow_redirects=False)
        channel = self._channel(row["channel"], self.http)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TemporaryFailure),
                wait=wait_random_exponential(
                    multiplier=self.retries.backoff_s, max=self.retries.backoff_max_s
                ),
                stop=stop_after_delay(budget),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    begun = await self._begin(row, attempts, first, duplicate)
                    if begun != "begun":
                        # held, superseded, suppressed meanwhile, or taken over
                        _outcome(begun)
                        return None
                    receipt = await self._send(channel, message, row, attempts)
                    provider_id = receipt.provider_message_id
                    return batched.Outcome(
                        row, sent=True, provider_id=provider_id, attempts=attempts
                    )
        except PermanentFailure as exc:
            _outcome("failed_permanently", attempts)
            return _failed(row, str(exc), permanent=True, attempts=attempts)
        except TemporaryFailure as exc:
            _outcome("failed", attempts)
            error = domain.gave_up(attempts, str(exc))
            return _failed(row, error, permanent=False, attempts=attempts)
        return None  # not reached: tenacity returns from the block or raises

    async def _send(
        self, channel: Channel, message: Outgoing, row: RowMapping, attempts: int
    ) -> Receipt:
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
            await bookkeeping.record_attempt_failed(self.runtime, row, self.owner, str(exc))
            raise
        except DeliveryFailure:
            raise
        except Exception as exc:
            # A channel bug must not look like a send that may have happened.
            error = f"{type(exc).__name__}: {exc}"
            await bookkeeping.record_attempt_failed(self.runtime, row, self.owner, error)
            raise PermanentFailure(error) from exc
        finally:
            SEND_DURATION.labels(row["channel"], outcome).observe(time.perf_counter() - began)

    def _channel(self, name: str, client: httpx.AsyncClient) -> Channel:
        """The adapter ``domain.route_of`` picks for the channel ``name``."""
        settings = self.settings
        outbox = settings.data_dir / "outbox"
        route = domain.route_of(
            name, smtp=bool(settings.smtp_url), sms_gateway=bool(settings.sms_url)
        )
        if route == "smtp" and self.smtp is not None:
            return SmtpChannel(self.smtp)
        if route == "eml_files":
            return EmlDirectory(outbox / "email")
        if route == "sms_files":
            return SmsDirectory(outbox / "sms")
        if route == "sms_gateway":
            token = settings.sms_token.get_secret_value()
            return SmsGateway(client, settings.sms_url, token, settings.http_timeout_s)
        secrets = {t: s.get_secret_value() for t, s in settings.outgoing_webhook_secrets.items()}
        return WebhookChannel(client, secrets, settings.http_timeout_s)

    # -- the bookkeeping steps (``commands.delivery``), under this instance's lease ----

    async def _begin(
        self, row: RowMapping, attempts: int, first: datetime, duplicate: bool
    ) -> Begun:
        begun = await self._steps.submit(batched.Beginning(row, attempts, first, duplicate))
        return cast(Begun, begun)  # a begin's result is never an outcome's None

    async def _sent(self, row: RowMapping, provider_id: str | None, attempts: int) -> None:
        outcome = batched.Outcome(row, sent=True, provider_id=provider_id, attempts=attempts)
        await self._steps.submit(outcome)

    async def _step_batch(
        self, batch: list[batched.Beginning | batched.Outcome]
    ) -> list[Begun | None]:
        return await batched.record_steps(self.runtime, self.owner, self._lease_s(), batch)


#: The delivery worker, declared in ``SPEC.workers``: made once at start (before the
#: subscription, which wakes it through ``runtime.worker(Delivery)``) and supervised with
#: the consumers.
DELIVERY = WorkerSpec("notify-svc-delivery", Delivery)


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


def _failed(row: RowMapping, error: str, *, permanent: bool, attempts: int) -> batched.Outcome:
    return batched.Outcome(row, sent=False, error=error, permanent=permanent, attempts=attempts)


def _outcome(outcome: str, attempts: int | None = None) -> None:
    """Note the send's outcome (sent, failed, failed_permanently, not_begun) on its span."""
    span = trace.get_current_span()
    span.set_attribute("dunning.outcome", outcome)
    if attempts is not None:
        span.set_attribute("dunning.attempts", attempts)
    if outcome.startswith("failed"):
        span.set_status(Status(StatusCode.ERROR, outcome))
