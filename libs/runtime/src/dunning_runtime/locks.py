"""Per-account serialisation: one transaction at a time works on one ``tenant:account``.

DESIGN.md promises per-key order on the bus, and the key is ``tenant:account``.
Row locks are not enough for that: two transactions on two invoices of one
account lock different rows, take outbox ids in insert order and may commit in
the other order, and a transaction creating an invoice cannot lock the row a
concurrent payment is looking for. So every command, event handler and job that
changes an account's state first calls ``lock_account`` in its transaction.

On PostgreSQL that is a transaction-scoped advisory lock on a stable 64-bit hash
of the key, released at commit or rollback. On SQLite it is a no-op: every write
transaction starts with ``BEGIN IMMEDIATE`` and so already holds the database's
single write lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


def account_lock_id(tenant: str, account_id: str) -> int:
    """The advisory lock id of ``tenant:account_id``: a signed 64-bit integer that is the
    same in every process and release (Python's ``hash()`` is salted per process)."""
    digest = hashlib.blake2b(f"{tenant}:{account_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_account(session: AsyncSession, tenant: str, account_id: str) -> None:
    """Wait until this transaction alone works on ``tenant:account_id``; held until it ends."""
    await lock_accounts(session, [(tenant, account_id)])


async def lock_accounts(session: AsyncSession, keys: Iterable[tuple[str, str]]) -> None:
    """``lock_account`` for several ``(tenant, account_id)`` keys in one round trip.

    The locks are taken in ascending lock-id order, the one order every caller uses,
    so two transactions locking overlapping sets never wait for each other in a cycle.
    """
    if session.get_bind().dialect.name != "postgresql":
        # Start the transaction now: its BEGIN IMMEDIATE takes SQLite's one write lock,
        # which covers every account, before the caller reads anything.
        await session.connection()
        return
    ids = sorted({account_lock_id(tenant, account) for tenant, account in keys})
    if not ids:
        return
    # The ordered subquery fixes the order in which the locks are acquired.
    await session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(id)) FROM "
            "(SELECT unnest(CAST(:ids AS bigint[])) AS id ORDER BY id) AS wanted"
        ),
        {"ids": ids},
    )
