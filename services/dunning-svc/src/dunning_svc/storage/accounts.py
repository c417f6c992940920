"""Accounts: loaded and saved in sets, the due ones found, the worklist read."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any, Literal

from sqlalchemy import (
    String,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.bulk import array_type, driver_connection
from dunning_runtime.db import Database
from dunning_svc.core import Account
from dunning_svc.storage.state import columns_of, to_account
from dunning_svc.storage.tables import (
    E4,
    WRITTEN_COLUMNS,
    Key,
    accounts,
)

#: An account row as PostgreSQL's bulk load hands it to ``to_account`` (attribute access,
#: like SQLAlchemy's rows), the columns in table order.
_Row = namedtuple("_Row", [c.name for c in accounts.c])  # type: ignore[misc]

# One index lookup per asked-for pair (a nested loop over the unique index), whatever
# plan the prepared statement settles on; exactly the pairs asked for come back.
_LOAD = (
    f"SELECT {', '.join(f'a.{c.name}' for c in accounts.c)} "
    f"FROM unnest($1::{array_type(accounts, 'tenant')}, $2::{array_type(accounts, 'account_id')})"
    " AS k(tenant, account_id) JOIN accounts AS a"
    " ON a.tenant = k.tenant AND a.account_id = k.account_id"
)


async def load_accounts(
    session: AsyncSession, keys: Iterable[Key]
) -> dict[Key, tuple[int, Account]]:
    """The stored accounts among ``keys`` with their row ids, in one query."""
    wanted = set(keys)
    if not wanted:
        return {}
    driver = await driver_connection(session)
    if driver is not None:
        pairs = sorted(wanted)
        records = await driver.fetch(_LOAD, [t for t, _ in pairs], [a for _, a in pairs])
        found: list[Any] = [_Row._make(r) for r in records]
        return {(r.tenant, r.account_id): (r.seq, to_account(r)) for r in found}
    # Two plain IN lists, which the database answers with one scan of the unique
    # (tenant, account_id) index (a row-value IN of 1,000 pairs was planned as a filter
    # over the whole table). The lists may match a few pairs not asked for (another
    # tenant's account of the same id): they are dropped here.
    rows = await session.execute(
        select(accounts).where(
            accounts.c.tenant.in_(sorted({t for t, _ in wanted})),
            accounts.c.account_id.in_(sorted({a for _, a in wanted})),
        )
    )
    return {
        (r.tenant, r.account_id): (r.seq, to_account(r))
        for r in rows
        if (r.tenant, r.account_id) in wanted
    }


async def load_account(session: AsyncSession, tenant: str, account_id: str) -> Account | None:
    """One account of ``tenant``, or None."""
    found = await load_accounts(session, [(tenant, account_id)])
    return found[(tenant, account_id)][1] if found else None


#: The bulk statements of ``save_accounts`` on PostgreSQL: an UPDATE over one array per
#: column, and a COPY of the new rows.
_UPDATED = ("seq", *WRITTEN_COLUMNS, "last_traceparent")
_UPDATE = (
    "UPDATE accounts AS a SET "
    + ", ".join(f"{c} = v.{c}" for c in WRITTEN_COLUMNS)
    + ", last_traceparent = coalesce(v.last_traceparent, a.last_traceparent) FROM unnest("
    + ", ".join(f"${i}::{array_type(accounts, c)}" for i, c in enumerate(_UPDATED, 1))
    + f") AS v({', '.join(_UPDATED)}) WHERE a.seq = v.seq"
)
_INSERTED = ("tenant", "account_id", *WRITTEN_COLUMNS, "last_traceparent")


async def save_accounts(
    session: AsyncSession,
    changed: Sequence[tuple[int | None, Account, date]],
    now: datetime,
    last_traceparents: Mapping[Key, str | None] | None = None,
) -> None:
    """Write accounts back: one UPDATE for the known rows, one INSERT for the new ones
    (on PostgreSQL an UPDATE over ``unnest`` arrays and a binary COPY, on SQLite Core
    executemany statements).

    ``last_traceparents`` holds the trace context of the accounts' latest inputs; an
    account not in it (a timer's run) keeps the one it has."""
    traceparents = last_traceparents or {}
    driver = await driver_connection(session)
    if driver is not None:
        await _save_bulk(driver, changed, now, traceparents)
        return
    known = [
        {
            "seq": seq,
            **columns_of(a, d, now),
            "last_traceparent": traceparents.get((a.tenant, a.account_id)),
        }
        for seq, a, d in changed
        if seq is not None
    ]
    new = [
        {
            "tenant": a.tenant,
            "account_id": a.account_id,
            **columns_of(a, d, now),
            "last_traceparent": traceparents.get((a.tenant, a.account_id)),
        }
        for seq, a, d in changed
        if seq is None
    ]
    if known:
        await session.execute(
            update(accounts)
            .where(accounts.c.seq == bindparam("k_seq"))
            .values(
                {
                    **{c: bindparam(f"v_{c}") for c in WRITTEN_COLUMNS},
                    "last_traceparent": func.coalesce(
                        bindparam("v_last_traceparent", type_=String), accounts.c.last_traceparent
                    ),
                }
            ),
            [{"k_seq": r["seq"], **{f"v_{k}": r[k] for k in _UPDATED[1:]}} for r in known],
        )
    if new:
        await session.execute(insert(accounts), new)


#: The written columns of ``columns_of``'s dict, in ``WRITTEN_COLUMNS`` order.
_WRITTEN = itemgetter(*WRITTEN_COLUMNS)


async def _save_bulk(
    driver: Any,
    changed: Sequence[tuple[int | None, Account, date]],
    now: datetime,
    traceparents: Mapping[Key, str | None],
) -> None:
    """``save_accounts`` on PostgreSQL: the rows as tuples straight from ``columns_of``
    (no merged dict per account), transposed into the UPDATE's arrays, or COPYed."""
    known: list[tuple[Any, ...]] = []
    new: list[tuple[Any, ...]] = []
    for seq, a, d in changed:
        written = _WRITTEN(columns_of(a, d, now))
        traceparent = traceparents.get((a.tenant, a.account_id))
        if seq is not None:
            known.append((seq, *written, traceparent))
        else:
            new.append((a.tenant, a.account_id, *written, traceparent))
    if known:
        await driver.execute(_UPDATE, *map(list, zip(*known, strict=True)))
    if new:
        await driver.copy_records_to_table(accounts.name, records=new, columns=list(_INSERTED))


async def each_account(database: Database, tenant: str | None = None) -> AsyncIterator[Account]:
    """Every account (of ``tenant``, or of all tenants), a page of 1,000 at a time in
    short read sessions: a million accounts are never all in memory."""
    after = 0
    while True:
        query = select(accounts).where(accounts.c.seq > after).order_by(accounts.c.seq)
        if tenant is not None:
            query = query.where(accounts.c.tenant == tenant)
        async with database.sessions() as session:
            rows = (await session.execute(query.limit(1000))).all()
        for row in rows:
            yield to_account(row)
        if len(rows) < 1000:
            return
        after = rows[-1].seq


async def accounts_by_stage(session: AsyncSession) -> dict[tuple[str, str, str], int]:
    """How many accounts each ``(tenant, stage, segment)`` has, in one GROUP BY (the
    worklist index covers it)."""
    rows = await session.execute(
        select(accounts.c.tenant, accounts.c.stage, accounts.c.segment, func.count()).group_by(
            accounts.c.tenant, accounts.c.stage, accounts.c.segment
        )
    )
    return {(t, st, sg): int(n) for t, st, sg, n in rows}


async def last_traceparents(session: AsyncSession, keys: Iterable[Key]) -> dict[Key, str]:
    """The stored trace context of the last input of each account among ``keys`` that
    has one (read only when tracing is on, for the links of timer decisions)."""
    wanted = set(keys)
    if not wanted:
        return {}
    rows = await session.execute(
        select(accounts.c.tenant, accounts.c.account_id, accounts.c.last_traceparent).where(
            accounts.c.tenant.in_(sorted({t for t, _ in wanted})),
            accounts.c.account_id.in_(sorted({a for _, a in wanted})),
            accounts.c.last_traceparent.is_not(None),
        )
    )
    return {(t, a): tp for t, a, tp in rows if (t, a) in wanted}


async def due_accounts(session: AsyncSession, now: datetime, limit: int) -> list[Key]:
    """``(tenant, account)`` of up to ``limit`` accounts whose timer is due at ``now``,
    earliest first, through the ``next_action_at`` index, claimed for this transaction.

    On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED``: a row another
    transaction has locked (another replica's sweep batch, a writer updating it) is
    passed over, so two sweeps take disjoint batches. SQLite has one writer, whose
    ``BEGIN IMMEDIATE`` already excludes every other sweep."""
    query = (
        select(accounts.c.tenant, accounts.c.account_id)
        .where(accounts.c.next_action_at <= now)
        .order_by(accounts.c.next_action_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = await session.execute(query)
    return [(t, a) for t, a in rows]


# -- reads of the HTTP edge ------------------------------------------------------------------


@dataclass(frozen=True)
class WorklistQuery:
    """Which accounts the worklist shows (None: any) and in which order (overdue:
    largest first; days_past_due: oldest first; account: by id)."""

    stage: str | None = None
    segment: str | None = None
    min_overdue: Decimal | None = None
    order: Literal["overdue", "days_past_due", "account"] = "overdue"


async def worklist(
    session: AsyncSession, tenant: str, wanted: WorklistQuery, *, offset: int, limit: int
) -> list[Account]:
    """``limit`` + 1 of ``tenant``'s accounts from position ``offset`` of the worklist
    ``wanted``: the one more says a next page exists (``pagination.offset_page``)."""
    query = select(accounts).where(accounts.c.tenant == tenant)
    if wanted.stage is not None:
        query = query.where(accounts.c.stage == wanted.stage)
    if wanted.segment is not None:
        query = query.where(accounts.c.segment == wanted.segment)
    if wanted.min_overdue is not None:
        query = query.where(accounts.c.overdue_e4 >= int(wanted.min_overdue * E4))
    if wanted.order == "overdue":
        query = query.order_by(accounts.c.overdue_e4.desc(), accounts.c.seq)
    elif wanted.order == "days_past_due":
        query = query.order_by(
            accounts.c.oldest_due_date.is_(None), accounts.c.oldest_due_date, accounts.c.seq
        )
    else:
        query = query.order_by(accounts.c.account_id)
    rows = (await session.execute(query.offset(offset).limit(limit + 1))).all()
    return [to_account(r) for r in rows]
