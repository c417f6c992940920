"""The ledger of notices and the stages seen per account: every statement on
``notifications`` and ``account_stages``.

What to write is decided before (``domain`` and the use cases); these functions read
rows into records and write what they are given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, tuple_, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from dunning_runtime.db import utc
from dunning_runtime.pagination import keyset
from notify_svc.domain import ContactMade, NoticeFilter, StageSeen
from notify_svc.storage.tables import account_stages, notifications


async def existing_notifications(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which ``(tenant, notification_id)`` are recorded already."""
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    rows = await session.execute(
        select(notifications.c.tenant, notifications.c.notification_id).where(
            tuple_(notifications.c.tenant, notifications.c.notification_id).in_(wanted)
        )
    )
    return {(t, n) for t, n in rows}


async def pending_of_accounts(
    session: AsyncSession, accounts: Iterable[tuple[str, str]]
) -> Sequence[RowMapping]:
    """The pending notices of ``accounts``."""
    wanted = sorted(set(accounts))
    if not wanted:
        return []
    rows = await session.execute(
        select(notifications).where(
            notifications.c.status == "pending",
            tuple_(notifications.c.tenant, notifications.c.account_id).in_(wanted),
        )
    )
    return rows.mappings().all()


async def due_seqs(session: AsyncSession, now: datetime, wall: datetime, limit: int) -> list[int]:
    """Up to ``limit`` pending notices due at ``now`` (service clock) whose lease, if any,
    has expired at ``wall``, earliest first."""
    rows = await session.execute(
        select(notifications.c.seq)
        .where(
            notifications.c.status == "pending",
            notifications.c.due_at <= now,
            or_(notifications.c.lease_until.is_(None), notifications.c.lease_until < wall),
        )
        .order_by(notifications.c.due_at, notifications.c.seq)
        .limit(limit)
    )
    return [seq for (seq,) in rows]


async def claim(
    session: AsyncSession, seqs: Sequence[int], owner: str, wall: datetime, until: datetime
) -> Sequence[RowMapping]:
    """Lease the notices ``seqs`` that are still pending and unleased to ``owner``; returns
    the rows leased (a concurrent instance may have taken some)."""
    if not seqs:
        return []
    await session.execute(
        update(notifications)
        .where(
            notifications.c.seq.in_(list(seqs)),
            notifications.c.status == "pending",
            or_(notifications.c.lease_until.is_(None), notifications.c.lease_until < wall),
        )
        .values(lease_owner=owner, lease_until=until)
    )
    rows = await session.execute(
        select(notifications).where(
            notifications.c.seq.in_(list(seqs)),
            and_(notifications.c.lease_owner == owner, notifications.c.status == "pending"),
        )
    )
    return rows.mappings().all()


async def update_owned(session: AsyncSession, seq: int, owner: str, **values: Any) -> bool:
    """Write ``values`` to a notice still pending and leased to ``owner``; False when it is
    not (another instance took it over, or it was suppressed meanwhile)."""
    result = await session.execute(
        update(notifications)
        .where(
            notifications.c.seq == seq,
            notifications.c.lease_owner == owner,
            notifications.c.status == "pending",
        )
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


def _contact(wall: datetime) -> ColumnElement[bool]:
    """A notice that counts as a contact: it went out, or a live instance (its lease
    runs past ``wall``) is sending it."""
    return or_(
        notifications.c.status == "sent",
        and_(
            notifications.c.status == "pending",
            notifications.c.send_started_at.is_not(None),
            notifications.c.lease_until >= wall,
        ),
    )


async def contacts_of(
    session: AsyncSession, row: RowMapping, wall: datetime, now: datetime
) -> list[ContactMade]:
    """The account's other notices that went out (at ``sent_at``) or are being sent by
    a live instance (its lease runs past ``wall``; counted at ``now``)."""
    found = await session.execute(
        select(
            notifications.c.stage_sequence,
            notifications.c.stage,
            notifications.c.status,
            notifications.c.sent_at,
        ).where(
            notifications.c.tenant == row["tenant"],
            notifications.c.account_id == row["account_id"],
            notifications.c.seq != row["seq"],
            _contact(wall),
        )
    )
    return [
        ContactMade(
            stage_sequence=sequence,
            stage=stage,
            at=(utc(sent_at) if status == "sent" else None) or now,
            in_flight=status != "sent",
        )
        for sequence, stage, status, sent_at in found
    ]


async def insert_notifications(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record new notices (their rows are complete: status, bodies, due time)."""
    await session.execute(insert(notifications), [dict(r) for r in rows])


async def stages_of(
    session: AsyncSession, accounts: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], StageSeen]:
    """The latest stage change seen per ``(tenant, account_id)``."""
    wanted = sorted(set(accounts))
    if not wanted:
        return {}
    rows = await session.execute(
        select(account_stages).where(
            tuple_(account_stages.c.tenant, account_stages.c.account_id).in_(wanted)
        )
    )
    return {
        (r["tenant"], r["account_id"]): StageSeen(
            sequence=r["sequence"], stage=r["stage"], current_sequence=r["current_sequence"]
        )
        for r in rows.mappings()
    }


async def insert_stages(
    session: AsyncSession, stages: Mapping[tuple[str, str], StageSeen], now: datetime
) -> None:
    """Record the stages of accounts seen for the first time."""
    if not stages:
        return
    await session.execute(
        insert(account_stages),
        [
            {
                "tenant": tenant,
                "account_id": account,
                "sequence": seen.sequence,
                "stage": seen.stage,
                "current_sequence": seen.current_sequence,
                "updated_at": now,
            }
            for (tenant, account), seen in stages.items()
        ],
    )


async def update_stages(
    session: AsyncSession, stages: Mapping[tuple[str, str], StageSeen], now: datetime
) -> None:
    """Overwrite the stages of accounts seen before (in key order)."""
    if not stages:
        return
    await session.execute(
        update(account_stages)
        .where(
            account_stages.c.tenant == bindparam("k_tenant"),
            account_stages.c.account_id == bindparam("k_account"),
        )
        .values(
            sequence=bindparam("v_sequence"),
            stage=bindparam("v_stage"),
            current_sequence=bindparam("v_current"),
            updated_at=bindparam("v_updated"),
        ),
        [
            {
                "k_tenant": tenant,
                "k_account": account,
                "v_sequence": stages[(tenant, account)].sequence,
                "v_stage": stages[(tenant, account)].stage,
                "v_current": stages[(tenant, account)].current_sequence,
                "v_updated": now,
            }
            for tenant, account in sorted(stages)
        ],
    )


async def suppress_unstarted(
    session: AsyncSession, seq: int, reason: str, detail: str, now: datetime
) -> bool:
    """Mark a notice suppressed if it is still pending and no send of it began; False
    when one did (its outcome is recorded as it ends)."""
    result = await session.execute(
        update(notifications)
        .where(
            notifications.c.seq == seq,
            # Re-checked as the row is written: a send that began since it was read wins.
            notifications.c.status == "pending",
            notifications.c.send_started_at.is_(None),
        )
        .values(status="suppressed", reason=reason, error=detail, updated_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def notices_after(
    session: AsyncSession, tenant: str, where: NoticeFilter, after: int | None, limit: int
) -> Sequence[RowMapping]:
    """The tenant's notices past the sequence ``after``, in the order they were requested:
    ``limit`` and one more (``keyset``)."""
    query = select(notifications).where(notifications.c.tenant == tenant)
    if where.account_id is not None:
        query = query.where(notifications.c.account_id == where.account_id)
    if where.status is not None:
        query = query.where(notifications.c.status == where.status)
    if where.channel is not None:
        query = query.where(notifications.c.channel == where.channel)
    rows = await session.execute(keyset(query, notifications.c.seq, after, limit))
    return rows.mappings().all()


async def notice_of(session: AsyncSession, tenant: str, notification_id: str) -> RowMapping | None:
    """One of the tenant's notices, or None."""
    rows = await session.execute(
        select(notifications).where(
            notifications.c.tenant == tenant,
            notifications.c.notification_id == notification_id,
        )
    )
    return rows.mappings().first()


async def contacts_of_accounts(
    session: AsyncSession, accounts: Iterable[tuple[str, str]], wall: datetime
) -> Sequence[RowMapping]:
    """``contacts_of`` for several accounts in one statement: their notices that went
    out or are being sent by a live instance (lease past ``wall``), with ``seq``,
    ``tenant`` and ``account_id`` to tell them apart."""
    wanted = sorted(set(accounts))
    if not wanted:
        return []
    rows = await session.execute(
        select(
            notifications.c.seq,
            notifications.c.tenant,
            notifications.c.account_id,
            notifications.c.stage_sequence,
            notifications.c.stage,
            notifications.c.status,
            notifications.c.sent_at,
        ).where(
            tuple_(notifications.c.tenant, notifications.c.account_id).in_(wanted),
            _contact(wall),
        )
    )
    return rows.mappings().all()


async def owned_seqs(session: AsyncSession, seqs: Iterable[int], owner: str) -> set[int]:
    """Which of ``seqs`` are still pending and leased to ``owner``, locked (PostgreSQL:
    ``FOR UPDATE``; SQLite's write transaction holds the database) until the end of the
    transaction, so ``update_many`` may write them by ``seq`` alone."""
    wanted = sorted(set(seqs))
    if not wanted:
        return set()
    rows = await session.execute(
        select(notifications.c.seq)
        .where(
            notifications.c.seq.in_(wanted),
            notifications.c.lease_owner == owner,
            notifications.c.status == "pending",
        )
        .order_by(notifications.c.seq)
        .with_for_update()
    )
    return {seq for (seq,) in rows}


async def update_many(session: AsyncSession, changes: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Write each ``(seq, values)`` (every ``values`` with the same columns): one
    statement for them all. The rows must be ``owned_seqs`` of this transaction."""
    if not changes:
        return
    columns = sorted(changes[0][1])
    await session.execute(
        update(notifications)
        .where(notifications.c.seq == bindparam("k_seq"))
        .values({c: bindparam(f"v_{c}") for c in columns}),
        [{"k_seq": seq, **{f"v_{c}": values[c] for c in columns}} for seq, values in changes],
    )
