"""The trace context of each account's last input, for the links of timer decisions.

Revision ID: dunning_0002
Revises: dunning_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "dunning_0002"
down_revision = "dunning_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("last_traceparent", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("last_traceparent")
