"""Collectors' call tasks: reading them and completing one with its outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Money
from dunning_events.money import to_minor
from dunning_events.notifications import CollectorTaskCompleted
from dunning_runtime.locks import lock_account
from dunning_runtime.outbox import Outbox
from dunning_runtime.pagination import Page, keyset_page
from notify_svc import events
from notify_svc.commands.notifications import by_seq
from notify_svc.domain import Conflict, NotFound, TaskCompletion, TaskFilter
from notify_svc.storage import tasks


async def load_task(
    session: AsyncSession, tenant: str, task_id: str, *, lock: bool = False
) -> RowMapping:
    """A task of the tenant; ``NotFound`` otherwise. With ``lock``, its account is locked
    and the row read again for update."""
    row = await tasks.task_of(session, tenant, task_id)
    if row is None:
        raise NotFound(f"There is no task {task_id!r}.")
    if lock:
        await lock_account(session, tenant, row["account_id"])
        row = await tasks.task_of(session, tenant, task_id, for_update=True)
        assert row is not None  # a task is never deleted
    return row


async def list_tasks(
    session: AsyncSession, tenant: str, where: TaskFilter, after: int | None, limit: int
) -> Page[RowMapping]:
    """A page of the tenant's tasks, oldest first."""
    rows = await tasks.tasks_after(session, tenant, where, after, limit)
    return keyset_page(rows, limit, by_seq)


def _same_completion(row: RowMapping, body: TaskCompletion) -> bool:
    amount = to_minor(body.amount, body.currency) if body.amount and body.currency else None
    return bool(
        row["outcome"] == body.outcome
        and (row["note"] or "") == body.note
        and row["promised_minor"] == amount
        and row["promised_currency"] == body.currency
        and row["promised_date"] == body.promised_date
    )


async def complete_task(
    session: AsyncSession,
    outbox: Outbox,
    tenant: str,
    task_id: str,
    body: TaskCompletion,
    now: datetime,
) -> RowMapping | dict[str, Any]:
    """Complete an open task and publish ``CollectorTaskCompleted``; returns the task. The
    same completion again returns it unchanged; another outcome for a completed task is
    a ``Conflict``."""
    row = await load_task(session, tenant, task_id, lock=True)
    if row["status"] == "completed":
        if _same_completion(row, body):
            return row
        raise Conflict(f"Task {task_id!r} was already completed with outcome {row['outcome']!r}.")
    promised = None
    if body.outcome == "promised":
        assert body.amount is not None and body.currency is not None
        promised = Money(amount=body.amount, currency=body.currency)
    values = {
        "status": "completed",
        "outcome": body.outcome,
        "note": body.note,
        "promised_minor": to_minor(promised.amount, promised.currency) if promised else None,
        "promised_currency": promised.currency if promised else None,
        "promised_date": body.promised_date,
        "completed_by": body.completed_by,
        "completed_at": now,
    }
    await tasks.update_task(session, row["seq"], values)
    event = CollectorTaskCompleted(
        account_id=row["account_id"],
        task_id=task_id,
        notification_id=row["notification_id"],
        outcome=body.outcome,
        promised_amount=promised,
        promised_date=body.promised_date,
        note=body.note,
        completed_by=body.completed_by,
        completed_at=now,
    )
    await outbox.add(session, events.envelope(tenant, event, now))
    return {**dict(row), **values}
