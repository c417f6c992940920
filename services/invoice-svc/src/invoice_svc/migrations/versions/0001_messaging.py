"""Outbox and inbox tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from dunning_runtime.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables()


def downgrade() -> None:
    raise NotImplementedError("the first revision is not reversible")
