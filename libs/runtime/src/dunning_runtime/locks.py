"""Per-account serialisation: one transaction at a time works on one ``tenant:account``.

DESIGN.md promises per-key order on the bus, and the key is ``tenant:account``.
Row locks are not enough for that: two transactions on two invoices of one
account lock different rows, take outbox ids in insert order and may commit in
the other order, and a transaction creating an invoice cannot lock the row a
concurrent payment is looking for. So every command, event handler and job that
changes an account's state first calls ``lock_accounts`` in its transaction.

On PostgreSQL that is a transaction-scoped advisory lock per account, on a stable
64-bit hash of the key (salted with the service's schema), released at commit or
rollback, taken under a shared lock on the tenant. Only what is touched is locked:
two chunks of one busy tenant on disjoint accounts run at once on two replicas. A
transaction of more than ``MAX_ACCOUNT_LOCKS`` accounts (more than any chunk or batch
the services make by default) takes its tenants' locks exclusively instead, so that it
can never fill PostgreSQL's lock table: the safe fallback, which serialises that
tenant again for as long as the transaction runs. On SQLite nothing more is needed: every write
transaction starts with ``BEGIN IMMEDIATE`` and so holds the database's single
write lock.

Waiting locks are always taken in one order, tenants before accounts and each
level sorted by lock id, in one statement per level, so writers never wait in a
cycle. The timer sweep, which claims its rows before it knows their accounts,
never waits at all: ``try_lock_accounts`` takes what is free and leaves the rest.
The locks a transaction holds are remembered on its session, so taking them again
(``try_lock_accounts``, then ``lock_accounts`` in the code it calls) costs nothing.

PostgreSQL's shared lock table has ``max_locks_per_transaction`` x
(``max_connections`` + ``max_prepared_transactions``) entries; one transaction may
hold more than ``max_locks_per_transaction`` while the table has room. We set
``max_locks_per_transaction`` to 1024 (scripts/pg.sh, docker-compose.yml, the dev
overlay): every connection can hold a full batch at once; docs/deploy.md gives the
sizing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.bulk import driver_connection

#: Past this many accounts in one transaction, it locks its tenants whole instead of
#: each account: the largest batch of the services (1,000 invoices, payments or swept
#: accounts) stays within it, and a lock table of ``max_locks_per_transaction`` = 1024
#: per connection holds it on every connection at once.
MAX_ACCOUNT_LOCKS = 1000

Key = tuple[str, str]


def account_lock_id(tenant: str, account_id: str) -> int:
    """The advisory lock id of ``tenant:account_id``: a signed 64-bit integer that is the
    same in every process and release (Python's ``hash()`` is salted per process)."""
    return _lock_id(f"{tenant}:{account_id}")


def tenant_lock_id(tenant: str) -> int:
    """The advisory lock id of a whole tenant (a NUL never occurs in a tenant name, so it
    cannot collide with an account's)."""
    return _lock_id(f"{tenant}\0")


def _lock_id(key: str) -> int:
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class _Held:
    """The locks one transaction holds: tenants shared or whole, and accounts."""

    transaction: Any
    shared: set[str] = field(default_factory=set)
    whole: set[str] = field(default_factory=set)
    accounts: set[Key] = field(default_factory=set)

    def covers(self, key: Key) -> bool:
        return key[0] in self.whole or key in self.accounts


def _held(session: AsyncSession) -> _Held:
    """What the session's current transaction holds (a new record per transaction).
    Kept per top-level transaction: a rolled-back savepoint would release locks taken
    in it that this still counts, and the services use none."""
    transaction = session.sync_session.get_transaction()
    held = session.info.get("dunning_account_locks")
    if not isinstance(held, _Held) or held.transaction is not transaction:
        held = session.info["dunning_account_locks"] = _Held(transaction)
    return held


async def lock_account(session: AsyncSession, tenant: str, account_id: str) -> None:
    """Wait until this transaction alone works on ``tenant:account_id``; held until it ends."""
    await lock_accounts(session, [(tenant, account_id)])


async def lock_accounts(session: AsyncSession, keys: Iterable[Key]) -> None:
    """``lock_account`` for several ``(tenant, account_id)`` keys; call it once per
    transaction (again only for keys it already holds), before reading what the
    accounts' changes depend on.

    Two levels, always taken in the same order so writers never wait in a cycle: first
    each tenant's lock (sorted by id), shared, or exclusive for a transaction of more
    than ``MAX_ACCOUNT_LOCKS`` accounts (the fallback); then, unless the tenant is
    locked whole, each account's lock (sorted by id). On SQLite the transaction just
    begins: its BEGIN IMMEDIATE takes the one write lock, which covers every account.
    """
    if session.get_bind().dialect.name != "postgresql":
        await session.connection()
        return
    held = _held(session)
    wanted = {k for k in keys if not held.covers(k)}
    if not wanted:
        return
    tenants = {t for t, _ in wanted}
    if len(wanted) > MAX_ACCOUNT_LOCKS:
        await _take(session, "pg_advisory_xact_lock", sorted(map(tenant_lock_id, tenants)))
        held.whole |= tenants
        return
    fresh = tenants - held.shared
    if fresh:
        await _take(session, "pg_advisory_xact_lock_shared", sorted(map(tenant_lock_id, fresh)))
        held.shared |= fresh
    await _take(session, "pg_advisory_xact_lock", sorted({account_lock_id(*k) for k in wanted}))
    held.accounts |= wanted


async def try_lock_accounts(session: AsyncSession, keys: Iterable[Key]) -> set[Key]:
    """The keys among ``keys`` this transaction now holds the locks of, taken without
    waiting: a key whose tenant is locked whole or whose account is locked by another
    transaction is left out. For a transaction that already holds row locks it claimed
    (the timer sweep): waiting then could close a cycle with a writer that holds an
    account's lock and waits for its row. Every key on SQLite (one writer)."""
    wanted = set(keys)
    if session.get_bind().dialect.name != "postgresql":
        await session.connection()
        return wanted
    held = _held(session)
    got = {k for k in wanted if held.covers(k)}
    rest = wanted - got
    ids = {tenant_lock_id(t): t for t in {t for t, _ in rest} - held.shared}
    held.shared |= {ids[i] for i in await _try(session, "pg_try_advisory_xact_lock_shared", ids)}
    by_id = {account_lock_id(*k): k for k in rest if k[0] in held.shared}
    taken = {by_id[i] for i in await _try(session, "pg_try_advisory_xact_lock", by_id)}
    held.accounts |= taken
    return got | taken


#: Advisory locks are the database's, not a schema's: the lock id is XORed with a hash
#: of the transaction's schema (the service's), so services sharing a database (and test
#: or bench runs in schemas of their own) never wait on each other's accounts. All the
#: writers of one schema salt alike, so the order by unsalted id stays one total order.
_SALTED = "(w.id # (SELECT hashtextextended(current_schema(), 0)))"
_IDS = "(SELECT unnest($1::bigint[]) AS id ORDER BY id) AS w"


async def _take(session: AsyncSession, function: str, ids: list[int]) -> None:
    # One round trip; the ordered subquery fixes the order the locks are acquired in.
    # Straight to asyncpg (a prepared statement per function): SQLAlchemy's text()
    # execution cost more client CPU than the statement's own round trip.
    driver = await driver_connection(session)
    assert driver is not None, "advisory locks are PostgreSQL's"
    await driver.fetchval(f"SELECT count({function}{_SALTED}) FROM {_IDS}", ids)


async def _try(session: AsyncSession, function: str, ids: Iterable[int]) -> list[int]:
    """The ids among ``ids`` whose lock ``function`` (a ``pg_try_`` one) obtained."""
    wanted = sorted(ids)
    if not wanted:
        return []
    # The function is volatile, so PostgreSQL calls it once per id, in the subquery's order.
    driver = await driver_connection(session)
    assert driver is not None, "advisory locks are PostgreSQL's"
    rows = await driver.fetch(f"SELECT w.id FROM {_IDS} WHERE {function}{_SALTED}", wanted)
    return [i for (i,) in rows]
