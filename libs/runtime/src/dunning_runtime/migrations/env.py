"""Alembic environment shared by every service; the connection comes from ``upgrade``."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
schema = context.config.attributes.get("schema")
context.configure(
    connection=connection,
    version_table_schema=schema,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
