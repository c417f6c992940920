"""dunning-svc's set-based queries, on the active database."""

from __future__ import annotations

from datetime import UTC, datetime

from dunning_runtime.db import Database
from dunning_runtime.settings import ServiceSettings
from dunning_svc import storage
from dunning_svc.core import Account
from dunning_svc.main import SPEC

NOW = datetime(2026, 3, 5, 10, tzinfo=UTC)


async def test_load_accounts_returns_exactly_the_pairs_asked_for(
    dunning_settings: ServiceSettings,
) -> None:
    # load_accounts matches tenants and account ids as two lists: a pair made of one
    # asked-for tenant and another asked-for tenant's account id must not come back.
    database = Database(
        dunning_settings.effective_database_url, schema=dunning_settings.effective_schema
    )
    try:
        await database.migrate(SPEC.versions)
        stored = [("acme", "A-1"), ("acme", "A-2"), ("globex", "A-1"), ("globex", "B-9")]
        async with database.transaction() as session:
            await storage.save_accounts(
                session,
                [(None, Account(t, a), NOW.date()) for t, a in stored],
                NOW,
            )
        async with database.transaction() as session:
            found = await storage.load_accounts(session, [("acme", "A-1"), ("globex", "B-9")])
            missing = await storage.load_accounts(session, [("acme", "B-9")])
        assert sorted(found) == [("acme", "A-1"), ("globex", "B-9")]
        assert all(account.tenant == t for (t, _), (_, account) in found.items())
        assert missing == {}
    finally:
        await database.dispose()
