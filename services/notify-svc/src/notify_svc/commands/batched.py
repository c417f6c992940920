"""The delivery worker's bookkeeping in batches: the notices whose attempts begin, or
whose outcomes are in, at about the same time share one transaction and one statement
per kind of write.

Each send still runs its own steps in order (``workers.Delivery``), and each step
waits for its own result; ``GroupCommit`` only lets the steps that arrive while a
transaction runs go together in the next one (a group commit). Begins and outcomes
share one queue (``record_steps``): as a send ends, its outcome and the begin of the
send taking its slot go in the same transaction, the outcomes first. Under load a
batch is as large as the sends in flight; a lone notice waits for nothing. The rules
are those of ``commands.delivery``, applied to each notice in turn within the
transaction: the account locks, the lease check (``storage.notices.owned_seqs``),
the send-time gate (``domain.at_send_time``, each notice seeing the outcomes written
before it and the ones begun before it in the batch, as a sequential pass would) and
the outcome with its event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Event
from dunning_runtime.app import Runtime
from dunning_runtime.db import utc
from dunning_runtime.locks import lock_accounts
from notify_svc import domain, events
from notify_svc.commands.delivery import Begun, at_send_time, log, wall_now
from notify_svc.metrics import SENDS, count_suppressed_on_commit
from notify_svc.settings import NotifySettings
from notify_svc.storage import notices

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Runs ``flush`` on the items submitted while the previous flush ran, together.

    ``flush`` returns one result per item, in order. When a batch of several fails,
    each item is flushed alone, so one notice's error is not its neighbours'.
    """

    def __init__(self, flush: Callable[[list[Item]], Awaitable[list[Result]]]) -> None:
        self._flush = flush
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Queue ``item`` for the next flush and wait for its result."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain(), name="notify-group-commit")
        return await asyncio.shield(future)

    async def stop(self) -> None:
        """Wait for the flush under way (the worker stops after its sends)."""
        if self._draining is not None:
            with contextlib.suppress(Exception):
                await self._draining

    async def _drain(self) -> None:
        # One turn of the loop first: the steps that the same moment made ready (a send
        # ending frees a slot, the next send begins) join the batch.
        await asyncio.sleep(0)
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await self._flush([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()  # nobody waits forever on a flush that never ends
                raise
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc)
                    continue
                await self._one_by_one(batch)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)

    async def _one_by_one(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        for item, future in batch:
            try:
                [result] = await self._flush([item])
            except Exception as exc:
                _settle(future, exc)
            else:
                if not future.done():
                    future.set_result(result)


def _settle(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


@dataclass(frozen=True)
class Beginning:
    """A send about to begin: its notice, which attempt, since when, whether marked."""

    row: RowMapping
    attempts: int
    first: datetime
    duplicate: bool


@dataclass(frozen=True)
class Outcome:
    """A send's end: ``sent`` (with the provider's id) or failed (``error``)."""

    row: RowMapping
    sent: bool
    provider_id: str | None = None
    error: str = ""
    permanent: bool = False
    attempts: int = 0


async def begin_many(
    runtime: Runtime[NotifySettings], owner: str, lease_s: float, batch: Sequence[Beginning]
) -> list[Begun]:
    """``commands.delivery.begin`` for a batch, in one transaction."""
    return [r for r in await record_steps(runtime, owner, lease_s, batch) if r is not None]


async def record_outcomes(
    runtime: Runtime[NotifySettings], owner: str, batch: Sequence[Outcome]
) -> list[None]:
    """``commands.delivery.record_sent`` / ``record_failed`` for a batch, in one
    transaction: the notices still this instance's get their outcome and event."""
    await record_steps(runtime, owner, 0.0, batch)
    return [None] * len(batch)


async def record_steps(
    runtime: Runtime[NotifySettings],
    owner: str,
    lease_s: float,
    batch: Sequence[Beginning | Outcome],
) -> list[Begun | None]:
    """The outcomes and the begins of a batch in one transaction: one lock statement,
    one lease check, then the outcomes (each with its event), then the begins (each
    through the send-time gate, seeing those outcomes as a later transaction would).
    One result per item, in order: what came of a begin, None for an outcome."""
    wall, now = wall_now(), runtime.clock.now()
    outcomes = [s for s in batch if isinstance(s, Outcome)]
    begins = [s for s in batch if isinstance(s, Beginning)]
    async with runtime.database.transaction() as session:
        rows = [s.row for s in batch]
        await lock_accounts(session, {(r["tenant"], r["account_id"]) for r in rows})
        owned = await notices.owned_seqs(session, [r["seq"] for r in rows], owner)
        await _write_outcomes(runtime, session, outcomes, owned, now)
        begun = iter(await _write_begins(runtime, session, begins, owned, (wall, now), lease_s))
    for outcome in outcomes:
        SENDS.labels(outcome.row["channel"], "sent" if outcome.sent else "failed").inc()
        if not outcome.sent:
            log.warning("notify-svc: %s failed: %s", outcome.row["notification_id"], outcome.error)
    return [next(begun) if isinstance(s, Beginning) else None for s in batch]


async def _write_begins(
    runtime: Runtime[NotifySettings],
    session: AsyncSession,
    batch: Sequence[Beginning],
    owned: set[int],
    times: tuple[datetime, datetime],
    lease_s: float,
) -> list[Begun]:
    """Each begin through the gate, against its account's contacts; the owned ones are
    written (one statement per kind of write) and the superseded get their event."""
    if not batch:
        return []
    wall, now = times
    results: list[Begun] = []
    rows = [b.row for b in batch]
    found = await notices.contacts_of_accounts(
        session, {(r["tenant"], r["account_id"]) for r in rows}, wall
    )
    contacts = {
        c["seq"]: (
            (c["tenant"], c["account_id"]),
            domain.ContactMade(
                stage_sequence=c["stage_sequence"],
                stage=c["stage"],
                at=(utc(c["sent_at"]) if c["status"] == "sent" else None) or now,
                in_flight=c["status"] != "sent",
            ),
        )
        for c in found
    }
    writes: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for item in batch:
        row = item.row
        key = (row["tenant"], row["account_id"])
        made = [m for s, (k, m) in contacts.items() if k == key and s != row["seq"]]
        result, values = _gate(row, made, now)
        if row["seq"] not in owned:
            # As the one-notice path: the rule still speaks, nothing is written.
            results.append("not_begun" if result == "begun" else result)
            continue
        if result == "begun":
            values = _begun(item, wall, now, lease_s)
            contacts[row["seq"]] = (key, _in_flight(row, now))
        else:
            contacts.pop(row["seq"], None)  # held: no lease; superseded: not pending
        writes.setdefault(result, []).append((row["seq"], values))
        results.append(result)
    for changes in writes.values():
        await notices.update_many(session, changes)
    await _stage_suppressed(runtime, session, batch, writes.get("superseded", []), now)
    return results


def _gate(
    row: RowMapping, contacts: list[domain.ContactMade], now: datetime
) -> tuple[Begun, dict[str, Any]]:
    """The send-time rule for one notice (``commands.delivery._gate``): what came of it,
    and the write a hold or a supersession asks for (``_begun`` writes a begin)."""
    decision = at_send_time(row, contacts, now)
    if isinstance(decision, domain.Send):
        return "begun", {}
    ended = {"lease_until": None, "updated_at": now}
    if isinstance(decision, domain.Hold):
        log.info("notify-svc: %s held: %s", row["notification_id"], decision.why)
        # Back to the queue, due again when the hold ends (see commands.delivery._gate).
        return "held", {
            "due_at": decision.until,
            "first_attempt_at": None,
            "lease_owner": None,
            **ended,
        }
    return "superseded", {
        "status": "suppressed",
        "reason": "obsolete",
        "error": decision.detail,
        "send_started_at": None,
        **ended,
    }


def _begun(item: Beginning, wall: datetime, now: datetime, lease_s: float) -> dict[str, Any]:
    return {
        "send_started_at": wall,
        "attempts": item.attempts,
        "first_attempt_at": item.first,
        "possible_duplicate": item.duplicate,
        "lease_until": wall + timedelta(seconds=lease_s),
        "updated_at": now,
    }


def _in_flight(row: RowMapping, now: datetime) -> domain.ContactMade:
    return domain.ContactMade(
        stage_sequence=row["stage_sequence"], stage=row["stage"], at=now, in_flight=True
    )


async def _stage_suppressed(
    runtime: Runtime[NotifySettings],
    session: AsyncSession,
    batch: Sequence[Beginning],
    superseded: list[tuple[int, dict[str, Any]]],
    now: datetime,
) -> None:
    """``NotificationSuppressed`` for each notice the gate found obsolete."""
    if not superseded:
        return
    rows = {b.row["seq"]: b.row for b in batch}
    envelopes = []
    for seq, values in superseded:
        row = rows[seq]
        event = events.suppressed(row, "obsolete", values["error"])
        envelopes.append(events.envelope(row["tenant"], event, now, row))
    await runtime.outbox.add(session, *envelopes)
    count_suppressed_on_commit(session, [rows[seq]["channel"] for seq, _ in superseded])


async def _write_outcomes(
    runtime: Runtime[NotifySettings],
    session: AsyncSession,
    batch: Sequence[Outcome],
    owned: set[int],
    now: datetime,
) -> None:
    """The outcomes of the notices still this instance's, with their events."""
    sent: list[tuple[int, dict[str, Any]]] = []
    failed: list[tuple[int, dict[str, Any]]] = []
    envelopes = []
    for outcome in batch:
        row = outcome.row
        if row["seq"] not in owned:
            continue
        ended: dict[str, Any] = {"send_started_at": None, "lease_until": None}
        ended["updated_at"] = now
        event: Event
        if outcome.sent:
            values = {"status": "sent", "sent_at": now, "error": None, **ended}
            values["provider_message_id"] = outcome.provider_id
            sent.append((row["seq"], values))
            event = events.sent(row, now, outcome.provider_id)
        else:
            values = {"status": "failed", "error": outcome.error[:2000], **ended}
            values["permanent"] = outcome.permanent
            failed.append((row["seq"], values))
            event = events.failed(row, outcome.error, outcome.attempts, permanent=outcome.permanent)
        envelopes.append(events.envelope(row["tenant"], event, now, row))
    await notices.update_many(session, sent)
    await notices.update_many(session, failed)
    if envelopes:
        await runtime.outbox.add(session, *envelopes)
