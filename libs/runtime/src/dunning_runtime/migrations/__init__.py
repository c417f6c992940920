"""Alembic migrations, run programmatically at service start-up.

The migration environment (``env.py``) lives once, here, with the shared
"messaging" branch (outbox and inbox tables, in ``messaging/``). Each service
ships only its own ``versions/`` folder; both are upgraded to ``heads``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).parent
MESSAGING = HERE / "messaging"


def upgrade(connection: Any, versions: Path, schema: str | None) -> None:
    """Upgrade the shared branch and the service's own revisions on an open (sync) connection."""
    command.upgrade(_config(connection, versions, schema), "heads")


def pending(connection: Any, versions: Path, schema: str | None) -> bool:
    """Whether the database on ``connection`` lacks a revision of ``versions`` (or of the
    shared branch): a service started with ``DUNNING_MIGRATE=false`` refuses to run then."""
    script = ScriptDirectory.from_config(_config(connection, versions, schema))
    context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
    return set(context.get_current_heads()) != set(script.get_heads())


def _config(connection: Any, versions: Path, schema: str | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("path_separator", "os")
    # A service without tables of its own yet may have no versions folder at all.
    locations = [str(MESSAGING)] + ([str(versions)] if versions.is_dir() else [])
    config.set_main_option("version_locations", os.pathsep.join(locations))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config
