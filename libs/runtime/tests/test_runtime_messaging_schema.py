"""The frozen messaging revisions make exactly the tables ``messaging_tables`` defines.

The revisions state their tables as they were then; the live definitions are what
the code reads and writes. Upgraded from nothing, the schema must be those
definitions: no column, type, nullability, key or index apart. Runs on the
active backend (SQLite, or PostgreSQL with ``DUNNING_DATABASE_URL``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from dunning_runtime.db import Database
from dunning_runtime.messaging_tables import metadata
from dunning_runtime.settings import ServiceSettings


def _differences(connection: Connection) -> list[Any]:
    def ours(name: str | None, kind: str, *_: Any) -> bool:
        return kind != "table" or name in metadata.tables

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": ours}
    )
    return list(compare_metadata(context, metadata))


def _indexes(connection: Connection) -> dict[str, list[tuple[str | None, list[str | None]]]]:
    inspector = inspect(connection)
    return {
        table: sorted((i["name"], list(i["column_names"])) for i in inspector.get_indexes(table))
        for table in sorted(metadata.tables)
    }


async def test_the_messaging_revisions_make_the_messaging_tables(
    settings_factory: Callable[..., ServiceSettings], tmp_path: Path
) -> None:
    database = Database.from_settings(settings_factory("schema-svc"))
    try:
        await database.migrate(tmp_path / "no-versions-of-its-own")
        async with database.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            indexes = await conn.run_sync(_indexes)
            columns = await conn.run_sync(
                lambda c: [col["name"] for col in inspect(c).get_columns("idempotency_keys")]
            )
    finally:
        await database.dispose()
    # Named as they always were (the names are in the later revisions' downgrades).
    assert indexes["inbox"] == [("ix_inbox_received_at", ["received_at"])]
    assert indexes["idempotency_keys"] == [("ix_idempotency_keys_created_at", ["created_at"])]
    # In the order a database made before the freeze has them.
    assert columns == [
        "tenant",
        "key",
        "request_hash",
        "status_code",
        "response",
        "created_at",
        "owner",
    ]
