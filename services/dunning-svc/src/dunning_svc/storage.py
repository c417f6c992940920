"""dunning-svc's tables and the set-based queries on them.

One row per account holds what the worklist filters and sorts on as columns (stage,
segment, overdue total, oldest due date, pause, ``next_action_at``) and the rest of
the projection as compact JSON text (``state``), so a chunk of events loads its
accounts in one query and writes them back in one statement. ``next_action_at`` is
indexed: the scheduler reads only the accounts that are due, never all of them.
The timeline is append-only; policy versions are rows per tenant and segment.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Update,
    bindparam,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events.money import from_minor
from dunning_runtime.db import Database, SequenceId, utc
from dunning_runtime.pagination import keyset
from dunning_svc.core import Account, InvoiceState, Paused, Plan, Promise, Received
from dunning_svc.policy import PublishedPolicy, load_policy_json

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("seq", SequenceId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("segment", String(50), nullable=False),
    Column("stage", String(50), nullable=False),
    Column("policy_version", Integer),
    Column("paused", Boolean, nullable=False),
    Column("written_off", Boolean, nullable=False),
    # The overdue balance summed over currencies in units of 10^-4, for sorting and
    # min_overdue; the exact per-currency balances are in ``state``.
    Column("overdue_e4", BigInteger, nullable=False),
    Column("oldest_due_date", Date),
    Column("next_action_at", DateTime(timezone=True)),
    Column("last_contact_at", DateTime(timezone=True)),
    Column("state", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The W3C traceparent of the account's last input (event or action): a timer's
    # decision starts a trace of its own and links to it (docs/observability.md).
    Column("last_traceparent", String(100)),
    UniqueConstraint("tenant", "account_id", name="uq_accounts_tenant_account"),
    Index("ix_accounts_next_action", "next_action_at"),
    Index("ix_accounts_worklist", "tenant", "stage", "segment"),
)

timeline = Table(
    "timeline",
    metadata,
    Column("seq", SequenceId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    # input (an event received), decision, stage, command (an event emitted), action
    Column("kind", String(20), nullable=False),
    Column("summary", Text, nullable=False),
    Column("actor", String(200)),
    Column("policy_version", Integer),
    Column("data", Text),
    Index("ix_timeline_account", "tenant", "account_id", "seq"),
)

policies = Table(
    "policies",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("segment", String(50), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("body", Text, nullable=False),
    Column("apply_to_running", Boolean, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: The account columns a change writes back (besides ``state``).
_COLUMNS = (
    "segment",
    "stage",
    "policy_version",
    "paused",
    "written_off",
    "overdue_e4",
    "oldest_due_date",
    "next_action_at",
    "last_contact_at",
    "state",
    "updated_at",
)

_E4 = Decimal(10_000)

Key = tuple[str, str]


def dumps(value: Any) -> str:
    """Compact JSON text (the state column is read and written on every event)."""
    return json.dumps(value, separators=(",", ":"))


def to_account(row: Any) -> Account:
    """An account from its row."""
    return account_of(
        row.tenant,
        row.account_id,
        segment=row.segment,
        stage=row.stage,
        policy_version=row.policy_version,
        written_off=row.written_off,
        last_contact_at=utc(row.last_contact_at),
        next_action_at=utc(row.next_action_at),
        state=json.loads(row.state),
    )


# -- the state column: the one encoder and decoder of the account's state ------------------
# Short keys ("esc", "cur", "rem", ...) keep the column small; the core knows none of them.
# What is written must stay readable by every release that reads it: change keys only
# with a decoder that still reads the old ones.


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _from_day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _invoice_state(invoice: InvoiceState) -> dict[str, Any]:
    return {
        "id": invoice.invoice_id,
        "cur": invoice.currency,
        "iss": invoice.issued,
        "due_amt": invoice.amount_due,
        "issued_on": _day(invoice.issue_date),
        "due_on": _day(invoice.due_date),
        "pay": invoice.payments,
        "cred": invoice.credited,
        "disp": invoice.disputed,
        "void": invoice.void,
        "settled": invoice.settled,
        "fee": invoice.late_fee,
        "contact": invoice.contact,
        "number": invoice.number,
        "kind": invoice.kind,
    }


def _invoice_of(data: dict[str, Any]) -> InvoiceState:
    return InvoiceState(
        invoice_id=data["id"],
        currency=data["cur"],
        issued=data["iss"],
        amount_due=data["due_amt"],
        issue_date=_from_day(data["issued_on"]),
        due_date=_from_day(data["due_on"]),
        payments=dict(data["pay"]),
        credited=data["cred"],
        disputed=data["disp"],
        void=data["void"],
        settled=data["settled"],
        late_fee=data["fee"],
        contact=data["contact"],
        number=data["number"],
        kind=data["kind"],
    )


def _pause_state(pause: Paused | None) -> dict[str, Any] | None:
    if pause is None:
        return None
    return {"reason": pause.reason, "until": _day(pause.until), "by": pause.by}


def _promise_state(promise: Promise | None) -> dict[str, Any] | None:
    if promise is None:
        return None
    return {
        "id": promise.promise_id,
        "cur": promise.currency,
        "amount": promise.amount,
        "date": promise.promised_date.isoformat(),
        "since": promise.since.isoformat(),
    }


def _plan_state(plan: Plan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {
        "id": plan.plan_id,
        "cur": plan.currency,
        "inst": [[due.isoformat(), minor] for due, minor in plan.installments],
        "since": plan.since.isoformat(),
    }


def state_of(account: Account) -> dict[str, Any]:
    """Everything but the identity and the indexed columns, as JSON types (the ``state``
    column)."""
    return {
        "name": account.account_name,
        "contact": account.contact,
        "esc": account.escalation_contact,
        "tz": account.timezone,
        "loc": account.locale,
        "inv": [_invoice_state(account.invoices[k]) for k in sorted(account.invoices)],
        "pay": {
            payment_id: [p.currency, p.amount, p.received_at.isoformat()]
            for payment_id, p in account.payments.items()
        },
        "rev": sorted(account.reversed_payments),
        "seq": account.sequence,
        "cycle": account.cycle,
        "done": account.steps_done,
        "rem": account.reminded,
        "fees": account.fees_charged,
        "pause": _pause_state(account.pause),
        "promise": _promise_state(account.promise),
        "plan": _plan_state(account.plan),
        "hold": account.credit_hold,
        "handoff": account.handoff,
        "last_sent": account.last_sent_at.isoformat() if account.last_sent_at else None,
    }


def _records_of(state: dict[str, Any]) -> tuple[Paused | None, Promise | None, Plan | None]:
    pause, promise, plan = state["pause"], state["promise"], state["plan"]
    return (
        None if pause is None else Paused(pause["reason"], _from_day(pause["until"]), pause["by"]),
        None
        if promise is None
        else Promise(
            promise["id"],
            promise["cur"],
            promise["amount"],
            date.fromisoformat(promise["date"]),
            datetime.fromisoformat(promise["since"]),
        ),
        None
        if plan is None
        else Plan(
            plan["id"],
            plan["cur"],
            tuple((date.fromisoformat(due), minor) for due, minor in plan["inst"]),
            datetime.fromisoformat(plan["since"]),
        ),
    )


def account_of(
    tenant: str,
    account_id: str,
    *,
    segment: str,
    stage: str,
    policy_version: int | None,
    written_off: bool,
    last_contact_at: datetime | None,
    next_action_at: datetime | None,
    state: dict[str, Any],
) -> Account:
    """The account from its stored columns and ``state`` (the inverse of ``state_of``)."""
    last_sent = state.get("last_sent")
    pause, promise, plan = _records_of(state)
    return Account(
        tenant=tenant,
        account_id=account_id,
        account_name=state["name"],
        contact=state["contact"],
        escalation_contact=state["esc"],
        segment=segment,
        timezone=state["tz"],
        locale=state["loc"],
        invoices={i["id"]: _invoice_of(i) for i in state["inv"]},
        payments={
            payment_id: Received(currency, minor, datetime.fromisoformat(at))
            for payment_id, (currency, minor, at) in state["pay"].items()
        },
        reversed_payments=set(state["rev"]),
        stage=stage,
        sequence=state["seq"],
        cycle=state["cycle"],
        steps_done=list(state["done"]),
        reminded=list(state["rem"]),
        fees_charged=list(state.get("fees", [])),
        policy_version=policy_version,
        pause=pause,
        promise=promise,
        plan=plan,
        credit_hold=state["hold"],
        handoff=state["handoff"],
        written_off=written_off,
        last_contact_at=last_contact_at,
        last_sent_at=datetime.fromisoformat(last_sent) if last_sent else None,
        next_action_at=next_action_at,
    )


def columns_of(account: Account, today: date, now: datetime) -> dict[str, Any]:
    """The stored columns of ``account`` as of ``today`` (its local date)."""
    overdue = account.overdue_invoices(today)
    total = sum((from_minor(m, c) for c, m in account.totals(overdue).items()), start=Decimal(0))
    return {
        "segment": account.segment,
        "stage": account.stage,
        "policy_version": account.policy_version,
        "paused": account.paused,
        "written_off": account.written_off,
        "overdue_e4": int(total * _E4),
        "oldest_due_date": overdue[0].due_date if overdue else None,
        "next_action_at": account.next_action_at,
        "last_contact_at": account.last_contact_at,
        "state": dumps(state_of(account)),
        "updated_at": now,
    }


async def load_accounts(
    session: AsyncSession, keys: Iterable[Key]
) -> dict[Key, tuple[int, Account]]:
    """The stored accounts among ``keys`` with their row ids, in one query."""
    wanted = set(keys)
    if not wanted:
        return {}
    # Two plain IN lists, which PostgreSQL answers with one scan of the unique
    # (tenant, account_id) index; a row-value IN of 1,000 pairs was planned as a filter
    # over the whole table, 40 % of the timer sweep at 30,000 accounts and growing with
    # the table. The lists may match a few pairs not asked for (another tenant's
    # account of the same id): they are dropped here.
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


async def save_accounts(
    session: AsyncSession,
    changed: Sequence[tuple[int | None, Account, date]],
    now: datetime,
    last_traceparents: Mapping[Key, str | None] | None = None,
) -> None:
    """Write accounts back: one UPDATE for the known rows, one INSERT for the new ones.

    ``last_traceparents`` holds the trace context of the accounts' latest inputs; an
    account not in it (a timer's run) keeps the one it has."""
    traceparents = last_traceparents or {}
    known = [(seq, a, d) for seq, a, d in changed if seq is not None]
    new = [(a, d) for seq, a, d in changed if seq is None]
    if known:
        await session.execute(
            update(accounts)
            .where(accounts.c.seq == bindparam("k_seq"))
            .values(
                {
                    **{c: bindparam(f"v_{c}") for c in _COLUMNS},
                    "last_traceparent": func.coalesce(
                        bindparam("v_last_traceparent", type_=String), accounts.c.last_traceparent
                    ),
                }
            ),
            [
                {
                    "k_seq": seq,
                    **{f"v_{k}": v for k, v in columns_of(a, d, now).items()},
                    "v_last_traceparent": traceparents.get((a.tenant, a.account_id)),
                }
                for seq, a, d in known
            ],
        )
    if new:
        await session.execute(
            insert(accounts),
            [
                {
                    "tenant": a.tenant,
                    "account_id": a.account_id,
                    **columns_of(a, d, now),
                    "last_traceparent": traceparents.get((a.tenant, a.account_id)),
                }
                for a, d in new
            ],
        )


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
    earliest first, through the ``next_action_at`` index (no lock: to choose locks)."""
    rows = await session.execute(
        select(accounts.c.tenant, accounts.c.account_id)
        .where(accounts.c.next_action_at <= now)
        .order_by(accounts.c.next_action_at)
        .limit(limit)
    )
    return [(t, a) for t, a in rows]


async def append_timeline(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add timeline entries (one INSERT for all)."""
    if rows:
        await session.execute(insert(timeline), rows)


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


# -- policies -----------------------------------------------------------------------


async def latest_versions(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The newest policy version of each ``(tenant, segment)`` that has one stored."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(policies.c.tenant, policies.c.segment, func.max(policies.c.version))
        .where(tuple_(policies.c.tenant, policies.c.segment).in_(wanted))
        .group_by(policies.c.tenant, policies.c.segment)
    )
    return {(t, s): int(v) for t, s, v in rows}


async def policy_bodies(
    session: AsyncSession, keys: Iterable[tuple[str, str, int]]
) -> dict[tuple[str, str, int], str]:
    """Stored policy bodies by ``(tenant, segment, version)``."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(policies.c.tenant, policies.c.segment, policies.c.version, policies.c.body).where(
            tuple_(policies.c.tenant, policies.c.segment, policies.c.version).in_(wanted)
        )
    )
    return {(t, s, v): b for t, s, v, b in rows}


async def newest_policy(session: AsyncSession, tenant: str, segment: str) -> PublishedPolicy | None:
    """The newest stored version of ``tenant``'s ``segment`` policy, or None."""
    found = await policy_versions(session, tenant, segment, limit=1)
    return found[0] if found else None


async def policy_versions(
    session: AsyncSession, tenant: str, segment: str, *, limit: int | None = None
) -> list[PublishedPolicy]:
    """The stored versions of ``tenant``'s ``segment`` policy, newest first."""
    query = (
        select(policies)
        .where(policies.c.tenant == tenant, policies.c.segment == segment)
        .order_by(policies.c.version.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    rows = (await session.execute(query)).all()
    return [
        PublishedPolicy(
            segment,
            load_policy_json(r.body, version=r.version),
            apply_to_running=r.apply_to_running,
            created_by=r.created_by,
            created_at=utc(r.created_at),
        )
        for r in rows
    ]


async def policy_segments(session: AsyncSession, tenant: str) -> list[str]:
    """The segments ``tenant`` has published a policy for (in no order)."""
    rows = await session.execute(
        select(policies.c.segment).where(policies.c.tenant == tenant).distinct()
    )
    return list(rows.scalars().all())


async def add_policy(session: AsyncSession, tenant: str, published: PublishedPolicy) -> None:
    """Store a new policy version (its number is in ``published.policy``)."""
    await session.execute(
        insert(policies).values(
            tenant=tenant,
            segment=published.segment,
            version=published.version,
            body=published.policy.model_dump_json(),
            apply_to_running=published.apply_to_running,
            created_by=published.created_by,
            created_at=published.created_at,
        )
    )


async def repin_running(
    session: AsyncSession, tenant: str, segment: str, version: int, now: datetime
) -> None:
    """Move the accounts of ``segment`` already in dunning to policy ``version``, due for
    a look at ``now``."""
    await session.execute(
        _of_segment(tenant, segment)
        .where(accounts.c.policy_version.is_not(None))
        .values(policy_version=version, next_action_at=now)
    )


async def wake_idle(session: AsyncSession, tenant: str, segment: str, now: datetime) -> None:
    """Make the accounts of ``segment`` not in dunning (no pinned version, not written
    off) due for a look at ``now``."""
    await session.execute(
        _of_segment(tenant, segment)
        .where(accounts.c.policy_version.is_(None), accounts.c.written_off.is_(False))
        .values(next_action_at=now)
    )


def _of_segment(tenant: str, segment: str) -> Update:
    """An UPDATE of the accounts of ``tenant``'s ``segment``."""
    return update(accounts).where(accounts.c.tenant == tenant, accounts.c.segment == segment)


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
        query = query.where(accounts.c.overdue_e4 >= int(wanted.min_overdue * _E4))
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
