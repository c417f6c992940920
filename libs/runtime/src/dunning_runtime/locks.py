"""Per-account serialisation: one transaction at a time works on one ``tenant:account``.

DESIGN.md promises per-key order on the bus, and the key is ``tenant:account``.
Row locks are not enough for that: two transactions on two invoices of one
account lock different rows, take outbox ids in insert order and may commit in
the other order, and a transaction creating an invoice cannot lock the row a
concurrent payment is looking for. So every command, event handler and job that
changes an account's state first calls ``lock_account`` in its transaction.

On PostgreSQL that is a transaction-scoped advisory lock on a stable 64-bit hash
of the key, released at commit or rollback (under a shared lock on the tenant, which
a transaction touching very many accounts takes exclusively instead). On SQLite
nothing more is needed: every write transaction starts with ``BEGIN IMMEDIATE`` and
so holds the database's single write lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

#: Past this many accounts in one transaction, it locks its tenants whole instead:
#: PostgreSQL's lock table is finite (``max_locks_per_transaction``, 64 per connection
#: by default), and a batch of 1,000 invoices may name 1,000 accounts.
MAX_ACCOUNT_LOCKS = 32


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


async def lock_account(session: AsyncSession, tenant: str, account_id: str) -> None:
    """Wait until this transaction alone works on ``tenant:account_id``; held until it ends."""
    await lock_accounts(session, [(tenant, account_id)])


async def lock_accounts(session: AsyncSession, keys: Iterable[tuple[str, str]]) -> None:
    """``lock_account`` for several ``(tenant, account_id)`` keys; call it once per
    transaction, before reading what the accounts' changes depend on.

    Two levels, always taken in the same order so writers never wait in a cycle: first
    each tenant's lock (sorted by id), shared by writers of a few accounts and exclusive
    for one of more than ``MAX_ACCOUNT_LOCKS`` accounts; then, for the few, each
    account's lock (sorted by id). On SQLite the transaction just begins: its BEGIN
    IMMEDIATE takes the one write lock, which covers every account.
    """
    if session.get_bind().dialect.name != "postgresql":
        await session.connection()
        return
    wanted = set(keys)
    if not wanted:
        return
    tenants = sorted({tenant_lock_id(t) for t, _ in wanted})
    whole = len(wanted) > MAX_ACCOUNT_LOCKS
    function = "pg_advisory_xact_lock" if whole else "pg_advisory_xact_lock_shared"
    await _take(session, function, tenants)
    if not whole:
        await _take(session, "pg_advisory_xact_lock", sorted({account_lock_id(*k) for k in wanted}))


async def _take(session: AsyncSession, function: str, ids: list[int]) -> None:
    # One round trip; the ordered subquery fixes the order the locks are acquired in.
    await session.execute(
        text(
            f"SELECT count({function}(id)) FROM "
            "(SELECT unnest(CAST(:ids AS bigint[])) AS id ORDER BY id) AS wanted"
        ),
        {"ids": ids},
    )
