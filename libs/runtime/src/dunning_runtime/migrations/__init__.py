"""Alembic migrations, run programmatically at service start-up.

The migration environment (``env.py``) lives once, here; each service ships
only its own ``versions/`` folder. ``messaging_tables`` creates the outbox and
inbox tables that every service's first revision needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

HERE = Path(__file__).parent


def upgrade(connection: Any, versions: Path, schema: str | None) -> None:
    """Upgrade to ``head`` on an open (sync) connection."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(versions))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    command.upgrade(config, "head")


def create_messaging_tables() -> None:
    """Create the outbox and inbox tables (call from a service's first revision)."""
    from alembic import op

    from dunning_runtime.messaging_tables import inbox, outbox, relay_lease

    bind = op.get_bind()
    for table in (outbox, inbox, relay_lease):
        table.create(bind)
