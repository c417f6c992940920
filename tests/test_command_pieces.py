"""The shared command pieces in the runtime (issue 6, §6): cursors, account locks,
Idempotency-Key storage and retention, on the active backend."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, insert, select

from dunning_runtime import idempotency
from dunning_runtime.db import Database
from dunning_runtime.liveness import Liveness
from dunning_runtime.locks import (
    MAX_ACCOUNT_LOCKS,
    account_lock_id,
    lock_account,
    lock_accounts,
    tenant_lock_id,
    try_lock_accounts,
)
from dunning_runtime.messaging_tables import idempotency_keys
from dunning_runtime.pagination import MAX_POSITION, decode_cursor, encode_cursor
from dunning_runtime.problems import Problem
from tests.support import ledger

# -- cursors -----------------------------------------------------------------


@given(st.integers(min_value=0, max_value=MAX_POSITION))
def test_a_cursor_carries_its_position(position: int) -> None:
    cursor = encode_cursor(position)
    assert decode_cursor(cursor) == position
    assert cursor.isascii() and "=" not in cursor


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "",
        "\u00e9t\u00e9",
        _b64("s:" + str(MAX_POSITION + 1)),
        _b64("s:" + "9" * 30),
        _b64("1" * 30),
        _b64("s:-5"),
        _b64("s:1e3"),
        "A" * 100,
    ],
)
def test_a_cursor_the_api_did_not_make_is_a_422_naming_it(cursor: str) -> None:
    with pytest.raises(Problem) as info:
        decode_cursor(cursor)
    assert info.value.status == 422
    assert info.value.errors is not None
    assert [e["field"] for e in info.value.errors] == ["query.cursor"]


# -- account locks -----------------------------------------------------------


def test_lock_ids_are_stable_signed_64_bit_and_per_key() -> None:
    # Fixed across processes and releases: Python's hash() would be salted per process.
    assert account_lock_id("acme", "ACME-42") == account_lock_id("acme", "ACME-42")
    assert account_lock_id("acme", "ACME-42") == -5852516220059621114
    ids = {account_lock_id(t, a) for t in ("acme", "globex") for a in ("A", "B", "ACME-42")}
    ids |= {tenant_lock_id("acme"), tenant_lock_id("globex")}
    assert len(ids) == 8
    assert all(-(2**63) <= i < 2**63 for i in ids)


@pytest.fixture
async def database(settings_factory):
    settings = settings_factory("pieces")
    db = Database(settings.effective_database_url, schema=settings.effective_schema)
    await db.migrate(ledger.VERSIONS)
    yield db
    await db.dispose()


async def _two_writers(
    database: Database,
    first_keys: list[tuple[str, str]],
    second_keys: list[tuple[str, str]],
    *,
    second_waits: bool,
) -> list[str]:
    """A first transaction locks ``first_keys`` and holds them; then a second locks
    ``second_keys``. If ``second_waits``, it must not get through while the first holds
    its locks (checked half a second in, then the first commits); else the first
    commits only once the second has its locks. What happened, in order."""
    order: list[str] = []
    first_locked = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with database.transaction() as session:
            await lock_accounts(session, first_keys)
            order.append("first locked")
            first_locked.set()
            await release.wait()
            order.append("first commits")

    async def second() -> None:
        await first_locked.wait()
        async with database.transaction() as session:
            await lock_accounts(session, second_keys)
            order.append("second locked")
            release.set()

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_locked.wait()
    if second_waits:
        await asyncio.sleep(0.5)  # time for the second to (wrongly) get through
        assert order == ["first locked"]
        release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return order


async def test_one_transaction_at_a_time_works_on_an_account(database: Database) -> None:
    """The second writer of an account waits until the first has committed; on SQLite
    the write lock of BEGIN IMMEDIATE does what the advisory lock does on PostgreSQL."""
    order = await _two_writers(
        database,
        [("acme", "ACME-42")],
        [("acme", "ACME-42"), ("acme", "OTHER")],
        second_waits=True,
    )
    assert order == ["first locked", "first commits", "second locked"]


@pytest.mark.parametrize("many", [False, True])
async def test_a_transaction_of_many_accounts_excludes_the_few(
    database: Database, many: bool
) -> None:
    """More than MAX_ACCOUNT_LOCKS accounts lock the tenant whole: a writer of one of
    them, or of another account of the tenant, waits; another tenant does not."""
    accounts = [("acme", f"A-{i}") for i in range(MAX_ACCOUNT_LOCKS + 1 if many else 2)]
    big_locked = asyncio.Event()
    release = asyncio.Event()
    order: list[str] = []

    async def big() -> None:
        async with database.transaction() as session:
            await lock_accounts(session, accounts)
            big_locked.set()
            await release.wait()
            order.append("big commits")

    async def small(tenant: str, account: str) -> None:
        await big_locked.wait()
        async with database.transaction() as session:
            await lock_account(session, tenant, account)
            order.append(f"{tenant}:{account}")

    tasks = [
        asyncio.create_task(big()),
        asyncio.create_task(small("acme", "A-0")),
        asyncio.create_task(small("acme", "ELSEWHERE")),
    ]
    await big_locked.wait()
    await asyncio.sleep(0.5)
    if database.is_sqlite:
        assert order == []  # one writer at a time, whatever the accounts
    elif many:
        assert order == []  # the whole tenant is locked
    else:
        assert order == ["acme:ELSEWHERE"]  # only the big writer's accounts are
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert order.index("big commits") < order.index("acme:A-0")


@pytest.mark.parametrize("overlap", [False, True])
async def test_large_transactions_of_one_tenant_lock_only_their_accounts(
    database: Database, overlap: bool
) -> None:
    """Two transactions of 40 accounts each of one tenant (more than the old limit of 32,
    which locked the tenant whole): on PostgreSQL disjoint sets hold their locks at the
    same time, overlapping ones take turns; SQLite always takes turns (one writer)."""
    first_set = [("acme", f"A-{i}") for i in range(40)]
    second_set = [("acme", f"A-{i}") for i in range(39 if overlap else 40, 79 if overlap else 80)]
    concurrent = not overlap and not database.is_sqlite
    order = await _two_writers(database, first_set, second_set, second_waits=not concurrent)
    if concurrent:
        assert order == ["first locked", "second locked", "first commits"]
    else:
        assert order == ["first locked", "first commits", "second locked"]


async def test_try_lock_takes_the_free_accounts_and_leaves_the_busy(database: Database) -> None:
    """``try_lock_accounts`` never waits: it returns the keys it could lock (all on
    SQLite, whose one writer excludes every other); a later ``lock_accounts`` of keys
    it holds costs nothing."""
    busy_locked = asyncio.Event()
    release = asyncio.Event()

    async def busy() -> None:
        async with database.transaction() as session:
            await lock_accounts(session, [("acme", "BUSY")])
            busy_locked.set()
            await release.wait()

    task = asyncio.create_task(busy())
    await busy_locked.wait()
    try:
        if database.is_sqlite:
            release.set()  # the writer must finish before another transaction begins
            await task
        async with database.transaction() as session:
            wanted = [("acme", "BUSY"), ("acme", "FREE"), ("globex", "FREE")]
            got = await asyncio.wait_for(try_lock_accounts(session, wanted), 60)
            await asyncio.wait_for(lock_accounts(session, got), 60)
        expected = set(wanted) if database.is_sqlite else {("acme", "FREE"), ("globex", "FREE")}
        assert got == expected
    finally:
        release.set()
        await asyncio.wait_for(task, 60)


# -- idempotency keys --------------------------------------------------------


def test_the_fingerprint_reads_json_by_content() -> None:
    one = idempotency.request_hash("POST", "/v1/x", "", b'{"a": 1, "b": [1, 2]}')
    same = idempotency.request_hash("POST", "/v1/x", "", b'{"b":[1,2],"a":1}')
    assert one == same
    assert one != idempotency.request_hash("POST", "/v1/x", "", b'{"a": 2, "b": [1, 2]}')
    assert one != idempotency.request_hash("POST", "/v1/y", "", b'{"a": 1, "b": [1, 2]}')
    assert one != idempotency.request_hash("POST", "/v1/x", "q=1", b'{"a": 1, "b": [1, 2]}')


async def test_a_claimed_key_is_replayed_refused_or_taken_over(database: Database) -> None:
    now = datetime.now(UTC)
    first, second = Liveness(database, "pieces"), Liveness(database, "pieces")
    await first.start()
    await second.start()
    try:
        async with database.transaction() as session:
            assert await idempotency.claim(session, "acme", "k", "h1", now, first) is None
        # However old, a claim whose instance is alive is in use, for it and for others.
        much_later = now + idempotency.CLAIM_TIMEOUT * 10
        for asking in (first, second):
            async with database.transaction() as session:
                with pytest.raises(Problem) as busy:
                    await idempotency.claim(session, "acme", "k", "h1", much_later, asking)
            assert (busy.value.status, busy.value.type.rsplit("/", 1)[1]) == (
                409,
                "idempotency-key-in-use",
            )
            assert busy.value.headers == {"Retry-After": "1"}
        # Its instance gone, the claim is taken over at once, not after a timeout.
        await first.close()
        async with database.transaction() as session:
            assert await idempotency.claim(session, "acme", "k", "h1", now, second) is None
            await idempotency.remember(session, "acme", "k", 201, {"id": 1})
        async with database.transaction() as session:
            stored = await idempotency.claim(session, "acme", "k", "h1", now, second)
            assert stored == idempotency.StoredResponse(201, {"id": 1})
            with pytest.raises(Problem) as reused:
                await idempotency.claim(session, "acme", "k", "h2", now, second)
        assert reused.value.type.endswith("idempotency-key-reused")
        # Released claims free their key; keys are per tenant.
        async with database.transaction() as session:
            assert await idempotency.claim(session, "globex", "k", "h2", now, second) is None
            await idempotency.release(session, "globex", "k")
            assert await idempotency.claim(session, "globex", "k", "h3", now, second) is None
    finally:
        await first.close()
        await second.close()


async def test_a_claim_without_an_owner_is_taken_over_after_the_timeout(
    database: Database,
) -> None:
    """Claims written before owners were recorded fall back to the old timeout."""
    now = datetime.now(UTC)
    liveness = Liveness(database, "pieces")
    await liveness.start()
    try:
        async with database.transaction() as session:
            await session.execute(
                insert(idempotency_keys).values(
                    tenant="acme",
                    key="old",
                    request_hash="h1",
                    status_code=0,
                    response={},
                    created_at=now,
                    owner=None,
                )
            )
        async with database.transaction() as session:
            with pytest.raises(Problem):
                await idempotency.claim(session, "acme", "old", "h1", now, liveness)
        later = now + idempotency.CLAIM_TIMEOUT + timedelta(seconds=1)
        async with database.transaction() as session:
            assert await idempotency.claim(session, "acme", "old", "h1", later, liveness) is None
    finally:
        await liveness.close()


async def test_purge_forgets_keys_older_than_the_window_a_batch_at_a_time(
    database: Database,
) -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    rows = [
        {
            "tenant": "acme",
            "key": f"k{i}",
            "request_hash": "h",
            "status_code": 200,
            "response": {},
            "created_at": now - timedelta(hours=i),
        }
        for i in range(30)
    ]
    async with database.transaction() as session:
        await session.execute(insert(idempotency_keys), rows)
    before = now - timedelta(hours=24)
    async with database.transaction() as session:
        assert await idempotency.purge(session, before, 4) == 4
    async with database.transaction() as session:
        assert await idempotency.purge(session, before, 100) == 1  # k25..k29 were > 24 h old
    async with database.transaction() as session:
        assert await idempotency.purge(session, before, 100) == 0
        kept = (
            await session.execute(select(func.count()).select_from(idempotency_keys))
        ).scalar_one()
        newest_gone = (
            await session.execute(
                select(func.count())
                .select_from(idempotency_keys)
                .where(idempotency_keys.c.created_at < before)
            )
        ).scalar_one()
    assert (kept, newest_gone) == (25, 0)


# -- a resource posted again with other content ----------------------------------


def test_changed_fields_names_nested_paths() -> None:
    accepted = {
        "amount_due": "10.00",
        "contact": {"name": "A", "email": "a@x.io"},
        "lines": [{"amount": "10.00"}],
    }
    candidate = {
        "amount_due": "10.00",
        "contact": {"name": "B", "email": "a@x.io"},
        "lines": [{"amount": "9.00"}],
    }
    assert idempotency.changed_fields(accepted, candidate) == ["contact.name", "lines[0].amount"]
    assert idempotency.changed_fields(accepted, accepted) == []
    assert idempotency.changed_fields({"lines": []}, {"lines": [{"a": 1}]}) == ["lines"]
    problem = idempotency.conflict_problem("invoice", "INV-1", ["contact.name"])
    assert problem.status == 409
    assert problem.body()["errors"] == [
        {"field": "body.contact.name", "message": "differs from the invoice already accepted"}
    ]
