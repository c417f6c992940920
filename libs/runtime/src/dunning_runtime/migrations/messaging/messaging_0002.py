"""Idempotency keys of POST requests, shared by every service.

Revision ID: messaging_0002
Revises: messaging_0001
"""

from __future__ import annotations

from alembic import op

from dunning_runtime.messaging_tables import idempotency_keys

revision = "messaging_0002"
down_revision = "messaging_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    idempotency_keys.create(op.get_bind())


def downgrade() -> None:
    idempotency_keys.drop(op.get_bind())
