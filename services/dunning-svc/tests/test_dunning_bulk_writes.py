"""The bulk statements of the event chunk path store exactly what the Core statements store.

On PostgreSQL ``load_accounts``, ``save_accounts``, ``append_timeline`` and
``Outbox.add`` go to the raw asyncpg connection (``unnest`` arrays); on SQLite, and on
PostgreSQL when ``driver_connection`` answers None, they are SQLAlchemy Core statements.
Each test runs the same work both ways on the active database and compares every
stored column (ids aside, which a sequence hands out): on SQLite the two ways are the
same path, so the tests only check it round-trips.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from dunning_fixtures import paid
from sqlalchemy import delete, select

from dunning_events import InvoiceIssued, make_envelope
from dunning_runtime import outbox as outbox_module
from dunning_runtime.db import Database, utc
from dunning_runtime.messaging_tables import outbox as outbox_table
from dunning_runtime.outbox import Outbox
from dunning_runtime.settings import ServiceSettings
from dunning_svc import storage
from dunning_svc.commands import PolicyBook, Work, process, publish_policy
from dunning_svc.core import Account, InvoiceState, Paused
from dunning_svc.main import SPEC
from dunning_svc.policy import shipped_policy
from dunning_svc.storage import tables

NOW = datetime(2026, 3, 20, 10, tzinfo=UTC)
NAME = "Müller & Söhne — 株式会社 «ü»"
CONTACT = {"name": "Zoë Ångström", "email": "zoë@example.com"}
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

Run = Callable[[Database], Awaitable[None]]


async def _no_driver(session: Any) -> None:
    return None


def _core_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every bulk write and the load take the SQLAlchemy Core statements."""
    # By module name: ``dunning_svc.storage.timeline`` is also the name of a table there.
    for name in (
        "dunning_svc.storage.accounts",
        "dunning_svc.storage.timeline",
        "dunning_svc.storage.policies",
    ):
        monkeypatch.setattr(importlib.import_module(name), "driver_connection", _no_driver)
    monkeypatch.setattr(outbox_module, "driver_connection", _no_driver)


@pytest.fixture
async def database(dunning_settings: ServiceSettings) -> Any:
    db = Database(dunning_settings.effective_database_url, schema=dunning_settings.effective_schema)
    await db.migrate(SPEC.versions)
    yield db
    await db.dispose()


async def _stored(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the chunk path writes, in id order, without ids; event ids and, when an
    earlier test installed a tracer, the decision spans' trace contexts (random both) are
    replaced by their position, wherever they occur."""
    written = {
        "accounts": tables.accounts,
        "timeline": tables.timeline,
        "outbox": outbox_table,
    }
    found: dict[str, list[tuple[Any, ...]]] = {}
    async with database.sessions() as session:
        for name, table in written.items():
            ids = table.c.seq if "seq" in table.c else table.c.id
            columns = [c for c in table.c if c.name not in ("seq", "id", "created_at")]
            rows = (await session.execute(select(*columns).order_by(ids))).all()
            found[name] = [tuple(_plain(v) for v in row) for row in rows]
        created = (await session.execute(select(outbox_table.c.created_at))).scalars().all()
    assert all(utc(c) is not None for c in created)
    positions = {row[0]: f"<event {i}>" for i, row in enumerate(found["outbox"])}
    contexts = dict.fromkeys(
        _TRACEPARENT.findall(repr([row for rows in found.values() for row in rows]))
    )
    positions |= {context: f"<trace {i}>" for i, context in enumerate(contexts)}
    for name, rows in found.items():
        found[name] = [tuple(_masked(v, positions) for v in row) for row in rows]
    return found


_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _masked(value: Any, positions: dict[str, str]) -> Any:
    for event_id, position in positions.items():
        if isinstance(value, str):
            value = value.replace(event_id, position)
        elif isinstance(value, bytes):
            value = value.replace(event_id.encode(), position.encode())
    return value


async def _both_ways(
    database: Database, monkeypatch: pytest.MonkeyPatch, run: Run
) -> dict[str, list[tuple[Any, ...]]]:
    """``run`` on the active path, then again (on emptied tables) on the Core path: the
    stored rows are the same."""
    await run(database)
    fast = await _stored(database)
    async with database.transaction() as session:
        for table in (tables.accounts, tables.timeline, outbox_table):
            await session.execute(delete(table))
    with monkeypatch.context() as patched:
        _core_path(patched)
        await run(database)
        core = await _stored(database)
    assert fast == core
    assert any(fast.values())
    return fast


async def _read_both_ways(
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    read: Callable[[Any, Any], Awaitable[Any]],
    wanted: Any,
) -> Any:
    """``read(session, wanted)`` on the active path, then on the Core path: the same answer."""
    async with database.transaction() as session:
        fast = await read(session, wanted)
    with monkeypatch.context() as patched:
        _core_path(patched)
        async with database.transaction() as session:
            core = await read(session, wanted)
    assert fast == core
    return fast


def _issued(invoice_id: str, due: date, account: str) -> InvoiceIssued:
    """An invoice of ``account`` with non-ASCII names."""
    return InvoiceIssued.model_validate(
        {
            "account_id": account,
            "invoice_id": invoice_id,
            "account_name": NAME,
            "contact": CONTACT,
            "amount_due": {"amount": "1250.00", "currency": "EUR"},
            "issue_date": date(2026, 1, 1),
            "due_date": due,
            "timezone": "Europe/Berlin",
        }
    )


def _account(tenant: str, account_id: str, *, full: bool) -> Account:
    """A bare account (NULL in every nullable column) or one with every record set."""
    account = Account(tenant, account_id)
    if not full:
        return account
    account.account_name, account.contact = NAME, dict(CONTACT)
    # An invoice with its own contact and a partial payment: every state key written.
    invoice = InvoiceState("INV-Ä", contact=dict(CONTACT), payments={"PAY-ß": 5_000})
    invoice.issued, invoice.currency, invoice.amount_due = True, "EUR", 99_950
    invoice.due_date, invoice.issue_date = date(2026, 2, 20), date(2026, 1, 1)
    account.invoices[invoice.invoice_id] = invoice
    account.stage, account.policy_version, account.written_off = "overdue_1", 3, True
    account.pause = Paused("Klärung läuft", date(2026, 4, 1), "zoë")
    account.last_contact_at = NOW - timedelta(days=2)
    account.next_action_at = NOW + timedelta(hours=5)
    return account


async def test_saved_accounts_match_the_core_statements(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run(db: Database) -> None:
        first = [
            _account("acme", "A-1", full=True),
            _account("acme", "Kunde-東京", full=False),
            _account("globex", "A-1", full=False),
        ]
        async with db.transaction() as session:
            await storage.save_accounts(
                session,
                [(None, a, NOW.date()) for a in first],
                NOW,
                {("acme", "A-1"): TRACE, ("globex", "A-1"): None},
            )
        later = NOW + timedelta(days=1)
        async with db.transaction() as session:
            loaded = await storage.load_accounts(session, [("acme", "A-1"), ("acme", "Kunde-東京")])
            known = [(seq, a) for seq, a in loaded.values()]
            for _, account in known:
                account.account_name = f"{account.account_name} ✓"
                account.next_action_at = None
            new = [_account("acme", "B-2", full=True), _account("initech", "Ω", full=False)]
            await storage.save_accounts(
                session,
                [(seq, a, later.date()) for seq, a in known]
                + [(None, a, later.date()) for a in new],
                later,
                # A known account without an entry keeps its stored traceparent; one
                # with None keeps it too (coalesce); a new one gets what it is given.
                {("acme", "Kunde-東京"): None, ("acme", "B-2"): TRACE},
            )

    await _both_ways(database, monkeypatch, run)


async def test_loaded_accounts_match_the_core_query(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = [
        _account("acme", "A-1", full=True),
        _account("acme", "Kunde-東京", full=False),
        _account("globex", "B-9", full=True),
    ]
    async with database.transaction() as session:
        await storage.save_accounts(session, [(None, a, NOW.date()) for a in stored], NOW)
    wanted = [("acme", "A-1"), ("acme", "Kunde-東京"), ("globex", "B-9"), ("acme", "B-9")]
    fast = await _read_both_ways(database, monkeypatch, storage.load_accounts, wanted)
    assert sorted(fast) == [("acme", "A-1"), ("acme", "Kunde-東京"), ("globex", "B-9")]
    assert fast[("acme", "A-1")][1] == stored[0]


async def test_latest_policy_versions_match_the_core_query(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest version per (tenant, segment), only for pairs asked for and stored."""
    policy = shipped_policy("standard")
    for tenant, times in (("acme", 3), ("globex", 1), ("initech-ü", 2)):
        for i in range(times):
            # The same policy with the other ``apply_to_running`` is a new version.
            await publish_policy(
                database, tenant, policy, apply_to_running=bool(i % 2), by="zoë", now=NOW
            )
    wanted = [("acme", "standard"), ("globex", "standard"), ("initech-ü", "standard")]
    wanted += [("acme", "high_risk"), ("nobody", "standard")]
    fast = await _read_both_ways(database, monkeypatch, storage.latest_versions, wanted)
    assert fast == {
        ("acme", "standard"): 3,
        ("globex", "standard"): 1,
        ("initech-ü", "standard"): 2,
    }


async def test_a_chunk_of_new_and_known_accounts_matches_the_core_statements(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several events per account, accounts already stored and new ones, commands in the
    # outbox with their timeline rows, non-ASCII text and NULL columns.
    first = [
        Work("acme", "A-1", _issued("INV-1", date(2026, 3, 1), "A-1"), None, TRACE),
        Work("acme", "B-ü", _issued("INV-2", date(2026, 4, 1), "B-ü")),
    ]
    second = [
        Work("acme", "A-1", _issued("INV-3", date(2026, 3, 2), "A-1")),
        Work("acme", "C-東京", _issued("INV-4", date(2026, 2, 1), "C-東京")),
        Work("acme", "A-1", paid("PAY-1", ("INV-1", "1250.00"), account="A-1")),
        Work("acme", "C-東京", _issued("INV-5", date(2026, 5, 1), "C-東京")),
        Work(
            "globex",
            "A-1",
            _issued("INV-6", date(2026, 3, 1), "A-1"),
            None,
            TRACE,
        ),
        Work("acme", "B-ü", paid("PAY-2", ("INV-2", "1250.00"), account="B-ü")),
    ]

    async def run(db: Database) -> None:
        book, outbox = PolicyBook(), Outbox()
        for chunk, at in ((first, NOW), (second, NOW + timedelta(hours=1))):
            async with db.transaction() as session:
                await process(session, outbox, book, chunk, at)

    stored = await _both_ways(database, monkeypatch, run)
    assert len(stored["accounts"]) == 4
    assert any(row[3] == "command" for row in stored["timeline"])
    assert stored["outbox"]


async def test_outbox_rows_match_the_core_statement(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    envelopes = [
        make_envelope(
            named, tenant="acme", source="/dunning-svc", time=NOW, traceparent=traceparent
        )
        for named, traceparent in (
            (_issued("INV-9", date(2026, 3, 1), "Kunde-東京"), TRACE),
            (_issued("INV-2", date(2026, 3, 2), "A-1"), None),
        )
    ]

    async def run(db: Database) -> None:
        async with db.transaction() as session:
            await Outbox().add(session, *envelopes)

    await _both_ways(database, monkeypatch, run)


async def test_over_long_values_are_refused_or_not_found_as_by_the_core_statements(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key longer than its column finds nothing (it is never cut to another account's
    id), and a value longer than its column is refused, never cut to fit."""
    if database.is_sqlite:
        pytest.skip("SQLite does not enforce VARCHAR lengths (one path there)")
    longest = "X" * 200  # account_id is VARCHAR(200)
    async with database.transaction() as session:
        await storage.save_accounts(
            session, [(None, _account("acme", longest, full=False), NOW.date())], NOW
        )
    found = await _read_both_ways(
        database, monkeypatch, storage.load_accounts, [("acme", longest + "X")]
    )
    assert found == {}
    for core in (False, True):
        with monkeypatch.context() as patched:
            if core:
                _core_path(patched)
            with pytest.raises(Exception, match="too long"):
                async with database.transaction() as session:
                    loaded = await storage.load_accounts(session, [("acme", longest)])
                    seq, account = loaded[("acme", longest)]
                    account.segment = "S" * 51  # segment is VARCHAR(50)
                    await storage.save_accounts(session, [(seq, account, NOW.date())], NOW)
