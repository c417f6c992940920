"""``<service> migrate`` and ``DUNNING_MIGRATE=false`` (issue 17): the Kubernetes base runs
the migrations once, in a Job, and its replicas only check that they have run."""

from __future__ import annotations

import asyncio

import pytest

from dunning_runtime.db import Database, SchemaNotMigrated
from dunning_runtime.serving import run
from dunning_runtime.settings import ServiceSettings
from dunning_svc.main import SPEC


def _check(settings: ServiceSettings) -> None:
    """What a replica with ``DUNNING_MIGRATE=false`` does at start-up."""

    async def check() -> None:
        database = Database.from_settings(settings)
        try:
            await database.migrate(SPEC.versions, apply=settings.migrate)
        finally:
            await database.dispose()

    asyncio.run(check())


def test_a_replica_that_may_not_migrate_waits_for_the_migrate_command(
    settings_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: ServiceSettings = settings_factory("dunning-svc", migrate=False)
    with pytest.raises(SchemaNotMigrated, match="DUNNING_MIGRATE is false"):
        _check(settings)
    # The Job's command, configured from the environment as in the container.
    monkeypatch.setenv("DUNNING_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DUNNING_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DUNNING_DATABASE_SCHEMA", settings.database_schema)
    monkeypatch.setenv("DUNNING_MIGRATE", "false")  # the command migrates all the same
    run(SPEC, ["migrate"])
    _check(settings)  # now current: starts
