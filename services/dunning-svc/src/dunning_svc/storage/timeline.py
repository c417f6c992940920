"""The timeline: appended in sets, read in keyset pages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.bulk import copy_rows, driver_connection
from dunning_runtime.db import utc
from dunning_runtime.pagination import keyset
from dunning_svc.core import Account
from dunning_svc.storage.tables import (
    timeline,
)

#: The columns of a timeline entry.
_COLUMNS = ("tenant", "account_id", "at", "kind", "summary", "actor", "policy_version", "data")


async def append_timeline(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add timeline entries in one statement, in order (their ``seq`` follows the list):
    a binary ``COPY`` on PostgreSQL, a Core executemany on SQLite."""
    if not rows:
        return
    driver = await driver_connection(session)
    if driver is None:
        await session.execute(insert(timeline), rows)
    else:
        await copy_rows(driver, timeline, _COLUMNS, rows)


def timeline_row(
    account: Account,
    at: datetime,
    kind: str,
    summary: str,
    *,
    actor: str | None = None,
    policy_version: int | None = None,
    data: str | None = None,
) -> dict[str, Any]:
    """One timeline entry of ``account``."""
    return {
        "tenant": account.tenant,
        "account_id": account.account_id,
        "at": at,
        "kind": kind,
        "summary": summary,
        "actor": actor,
        "policy_version": policy_version,
        "data": data,
    }


@dataclass(frozen=True)
class TimelineRecord:
    """One stored timeline entry; ``seq`` orders an account's entries."""

    seq: int
    at: datetime | None  # never None (the column is NOT NULL); typed as ``utc`` returns it
    kind: str
    summary: str
    actor: str | None
    policy_version: int | None
    data: dict[str, Any] | None


async def timeline_entries(
    session: AsyncSession, tenant: str, account_id: str, *, after: int | None, limit: int
) -> list[TimelineRecord]:
    """``limit`` + 1 timeline entries of an account, oldest first, after ``seq`` ``after``
    (the first when None): the one more says a next page exists (``pagination.keyset``)."""
    query = select(timeline).where(timeline.c.tenant == tenant, timeline.c.account_id == account_id)
    rows = (await session.execute(keyset(query, timeline.c.seq, after, limit))).all()
    return [
        TimelineRecord(
            seq=r.seq,
            at=utc(r.at),
            kind=r.kind,
            summary=r.summary,
            actor=r.actor,
            policy_version=r.policy_version,
            data=json.loads(r.data) if r.data else None,
        )
        for r in rows
    ]
