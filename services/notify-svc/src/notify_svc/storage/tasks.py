"""Collectors' call tasks: every statement on ``tasks``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.pagination import keyset
from notify_svc.domain import TaskFilter
from notify_svc.storage.tables import tasks


async def task_of(
    session: AsyncSession, tenant: str, task_id: str, *, for_update: bool = False
) -> RowMapping | None:
    """One of the tenant's tasks (locked for update when asked), or None."""
    query = select(tasks).where(tasks.c.tenant == tenant, tasks.c.task_id == task_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).mappings().first()


async def update_task(session: AsyncSession, seq: int, values: Mapping[str, Any]) -> None:
    """Write ``values`` to the task ``seq``."""
    await session.execute(update(tasks).where(tasks.c.seq == seq).values(**values))


async def open_task(session: AsyncSession, row: Mapping[str, Any]) -> None:
    """Insert the task ``row`` unless the tenant has one of its id already (a notice's
    task is opened once)."""
    exists = await session.scalar(
        select(tasks.c.seq).where(
            tasks.c.tenant == row["tenant"], tasks.c.task_id == row["task_id"]
        )
    )
    if exists is None:
        await session.execute(insert(tasks).values(**row))


async def tasks_after(
    session: AsyncSession, tenant: str, where: TaskFilter, after: int | None, limit: int
) -> Sequence[RowMapping]:
    """The tenant's tasks past the sequence ``after``, oldest first: ``limit`` and one
    more (``keyset``)."""
    query = select(tasks).where(tasks.c.tenant == tenant)
    if where.status is not None:
        query = query.where(tasks.c.status == where.status)
    if where.account_id is not None:
        query = query.where(tasks.c.account_id == where.account_id)
    return (await session.execute(keyset(query, tasks.c.seq, after, limit))).mappings().all()
