"""How the runtime tells a bad event from a bad moment, and how it reports an outage.

* ``EventRejected``: a handler's own rule refuses an event. Retrying cannot help: the
  event goes to its dead-letter topic at once (poison).
* ``is_transient``: the database or the broker is unreachable, a transaction lost a
  serialization race or a deadlock, something timed out. The event is fine: the
  consumer retries it, however long the outage lasts (within its elapsed bound).
* ``Outage``: one log line when a component loses a backend, with the cause, and one
  when it is back, instead of one line per failed attempt.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable

from aiokafka import errors as kafka_errors
from sqlalchemy import exc as sa_exc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

log = logging.getLogger(__name__)


class EventRejected(Exception):
    """A handler refuses an event by its own rules: the event is dead-lettered at once.

    A batch handler names the event it refuses with ``event_id``; the other events of
    the chunk are then applied without it. Without ``event_id`` the runtime finds the
    refused event by applying the chunk one event at a time.
    """

    def __init__(self, reason: str, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


# PostgreSQL SQLSTATEs worth waiting out: serialization failure, deadlock, connection
# exceptions (class 08), operator intervention such as a shutdown (57P0x), and
# "cannot connect now" while the server starts.
_TRANSIENT_SQLSTATES = ("40001", "40P01", "08", "57P0", "53300", "55P03")

_TRANSIENT_KAFKA: tuple[type[BaseException], ...] = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.RequestTimedOutError,
    kafka_errors.NotLeaderForPartitionError,
    kafka_errors.LeaderNotAvailableError,
    kafka_errors.NotEnoughReplicasError,
    kafka_errors.NotEnoughReplicasAfterAppendError,
    kafka_errors.CoordinatorNotAvailableError,
    kafka_errors.NotCoordinatorError,
    kafka_errors.CoordinatorLoadInProgressError,
)


def _sqlstate(error: BaseException) -> str:
    for name in ("sqlstate", "pgcode"):
        value = getattr(error, name, None)
        if isinstance(value, str):
            return value
    return ""


def _transient_one(error: BaseException) -> bool:
    if isinstance(error, (OSError, ConnectionError, TimeoutError)):
        return True  # ConnectionRefusedError, ConnectionResetError, socket timeouts...
    if isinstance(error, _TRANSIENT_KAFKA):
        return True
    if isinstance(error, kafka_errors.KafkaError) and getattr(error, "retriable", False):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.InterfaceError):  # "connection is closed" and the like
        return True
    if isinstance(error, sa_exc.TimeoutError):  # the connection pool's wait
        return True
    if isinstance(error, sqlite3.OperationalError):
        # Not "no such table" (also an OperationalError): only the file being busy or failing.
        text = str(error).lower()
        return any(w in text for w in ("locked", "busy", "disk i/o", "unable to open"))
    state = _sqlstate(error)
    if state and state.startswith(_TRANSIENT_SQLSTATES):
        return True
    # asyncpg's own connection errors do not all derive from OSError.
    name = type(error).__name__
    return name in {
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "CannotConnectNowError",
        "InterfaceError",
        "SerializationError",
        "DeadlockDetectedError",
        "TooManyConnectionsError",
        # A connection that broke in the middle of a query (a server restart) can leave
        # asyncpg's protocol unable to go on: "cannot switch to state 12".
        "InternalClientError",
    }


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` says "not now" rather than "never": the event must be retried.

    Looks through the exception's causes, since drivers and SQLAlchemy wrap the
    underlying connection error.
    """
    if not isinstance(exc, Exception):
        # A cancellation (or exit) is never retried, whatever it interrupted: a retry
        # loop that took a CancelledError raised while handling a ConnectionError for
        # a transient failure would swallow the stop.
        return False
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, EventRejected):
            return False
        if _transient_one(error):
            return True
        # SQLAlchemy keeps the driver's error in ``orig``; drivers chain their own causes.
        for nxt in (getattr(error, "orig", None), error.__cause__, error.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return False


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was cancelled and someone swallowed it.

    Some library code awaits its own cleanup under ``suppress(CancelledError)`` (aiokafka's
    client ``close()`` does), which also eats a cancellation aimed at the caller's task;
    the task then carries on as if never stopped. ``Task.cancelling()`` still counts the
    request, so loops call this between steps to stop as they were asked to.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, short enough for a log line or a header."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


class Outage:
    """One log line when ``component`` loses a backend and one when it is back.

    ``failed`` may be called on every failed attempt; only the first of an outage logs.
    """

    def __init__(self, component: str, logger: logging.Logger | None = None) -> None:
        self.component = component
        self.log = logger or log
        self.since: float | None = None
        self.cause = ""

    @property
    def down(self) -> bool:
        """True while an outage is under way."""
        return self.since is not None

    def failed(self, cause: BaseException | str) -> None:
        """Record a failed attempt; logs only the first one of an outage."""
        if self.since is not None:
            return
        self.since = time.monotonic()
        self.cause = cause if isinstance(cause, str) else describe(cause)
        self.log.warning("%s: outage began: %s", self.component, self.cause)

    def recovered(self, attempt_began: float | None = None) -> None:
        """Record a success; logs the end of an outage, if one was under way.

        ``attempt_began`` (``time.monotonic()``) lets an attempt that began before the
        outage and finished after it was noticed not count as the end of it.
        """
        if self.since is None or (attempt_began is not None and attempt_began < self.since):
            return
        lasted = time.monotonic() - self.since
        self.since = None
        self.log.warning(
            "%s: outage over after %.1f s (cause was: %s)", self.component, lasted, self.cause
        )


def transient_retries(
    outage: Outage,
    *,
    max_s: float,
    backoff_s: float,
    max_wait_s: float,
    retry: Callable[[BaseException], bool] = is_transient,
    on_retry: Callable[[], None] | None = None,
) -> AsyncRetrying:
    """The runtime's one retry policy: ``async for attempt in transient_retries(...)``.

    Errors for which ``retry`` is true are retried with exponential backoff and full
    jitter (``backoff_s`` doubling, at most ``max_wait_s`` a wait) until ``max_s`` have
    passed since the first try; then, or on any other error, the error is raised. Each
    failed try is reported to ``outage`` (which logs the first of an outage only) and to
    ``on_retry``, e.g. a metric.
    """

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            if on_retry is not None:
                on_retry()
            outage.failed(exc)

    return AsyncRetrying(
        retry=retry_if_exception(retry),
        wait=wait_random_exponential(multiplier=backoff_s, max=max_wait_s),
        stop=stop_after_delay(max_s),
        before_sleep=note,
        reraise=True,
    )
