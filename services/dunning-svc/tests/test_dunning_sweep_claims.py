"""Replicas sweeping at once (issue 17): disjoint claims, and no deadlock with a
consumer chunk on the same accounts, on the active database. No timing is asserted:
what each transaction took is read back from the accounts' ``updated_at``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from dunning_runtime.db import Database, utc
from dunning_runtime.locks import lock_accounts
from dunning_runtime.outbox import Outbox
from dunning_runtime.settings import ServiceSettings
from dunning_svc import commands, storage
from dunning_svc.commands import PolicyBook, Work
from dunning_svc.core import Account, Tick
from dunning_svc.main import SPEC
from dunning_svc.storage.tables import accounts

NOW = datetime(2026, 3, 5, 10, tzinfo=UTC)
KEYS = [("acme", f"A-{i:03}") for i in range(60)]

Key = tuple[str, str]


@pytest.fixture
async def database(dunning_settings: ServiceSettings) -> AsyncIterator[Database]:
    """The service's tables with 60 accounts of one tenant, each due an hour ago."""
    db = Database(dunning_settings.effective_database_url, schema=dunning_settings.effective_schema)
    await db.migrate(SPEC.versions)
    due = NOW - timedelta(hours=1)
    async with db.transaction() as session:
        await storage.save_accounts(
            session,
            [(None, Account(t, a, next_action_at=due), due.date()) for t, a in KEYS],
            due,
        )
    yield db
    await db.dispose()


async def _taken_at(database: Database) -> dict[datetime, set[Key]]:
    """The accounts by the instant they were last written at."""
    async with database.sessions() as session:
        rows = await session.execute(
            select(accounts.c.tenant, accounts.c.account_id, accounts.c.updated_at)
        )
    found: dict[datetime, set[Key]] = {}
    for tenant, account_id, at in rows:
        found.setdefault(utc(at) or NOW, set()).add((tenant, account_id))
    return found


async def test_two_concurrent_sweep_batches_take_disjoint_accounts_and_together_all(
    database: Database,
) -> None:
    """The first batch stays open while the second claims (on PostgreSQL): the second
    passes over the first one's rows and takes the rest. SQLite's one writer makes the
    second wait, and then the first one's accounts are no longer due."""
    book, outbox = PolicyBook(), Outbox()
    first_claimed, release = asyncio.Event(), asyncio.Event()
    first_at, second_at = NOW, NOW + timedelta(seconds=1)
    counts: dict[str, int] = {}

    async def first() -> None:
        async with database.transaction() as session:
            counts["first"] = await commands.sweep_batch(session, outbox, book, first_at, 30)
            first_claimed.set()
            if not database.is_sqlite:
                await release.wait()

    async def second() -> None:
        await first_claimed.wait()
        async with database.transaction() as session:
            counts["second"] = await commands.sweep_batch(session, outbox, book, second_at, 30)
        release.set()

    await asyncio.wait_for(asyncio.gather(first(), second()), 60)
    taken = await _taken_at(database)
    assert counts == {"first": 30, "second": 30}
    assert len(taken[first_at]) == len(taken[second_at]) == 30
    assert taken[first_at] | taken[second_at] == set(KEYS)
    # Earliest first: every account is due at the same instant, so any 30, but not twice.
    assert not taken[first_at] & taken[second_at]


async def test_a_sweep_and_a_consumer_chunk_on_the_same_accounts_do_not_deadlock(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk holds ten accounts' locks; the sweep claims every due row, including
    theirs; then the chunk updates its rows. On PostgreSQL the sweep leaves the ten
    (their locks are busy) instead of waiting for them while holding their rows, which
    the chunk waits for: both finish, each account handled once, by one of them."""
    book, outbox = PolicyBook(), Outbox()
    chunk_keys = KEYS[:10]
    chunk_at, sweep_at = NOW + timedelta(seconds=2), NOW + timedelta(seconds=3)
    chunk_locked, swept_claimed = asyncio.Event(), asyncio.Event()
    claim: Callable[..., Awaitable[list[Key]]] = storage.due_accounts

    async def claiming(*args: object, **kwargs: object) -> list[Key]:
        found = await claim(*args, **kwargs)
        swept_claimed.set()
        return found

    monkeypatch.setattr(storage, "due_accounts", claiming)
    counts: dict[str, int] = {}

    async def chunk() -> None:
        async with database.transaction() as session:
            await lock_accounts(session, chunk_keys)
            chunk_locked.set()
            if not database.is_sqlite:  # SQLite: the sweep cannot begin before this commits
                await swept_claimed.wait()
            work = [Work(t, a, Tick()) for t, a in chunk_keys]
            await commands.process(session, outbox, book, work, chunk_at, create=False)

    async def sweep() -> None:
        await chunk_locked.wait()
        async with database.transaction() as session:
            counts["sweep"] = await commands.sweep_batch(session, outbox, book, sweep_at, 100)

    await asyncio.wait_for(asyncio.gather(chunk(), sweep()), 60)
    taken = await _taken_at(database)
    assert taken[chunk_at] == set(chunk_keys)
    assert taken[sweep_at] == set(KEYS) - set(chunk_keys)
    # PostgreSQL claimed all 60 rows and left the chunk's ten; SQLite found 50 still due.
    assert counts["sweep"] == (50 if database.is_sqlite else 60)
