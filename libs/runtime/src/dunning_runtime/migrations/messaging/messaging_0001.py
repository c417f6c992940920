"""Outbox, inbox and relay-lease tables, shared by every service.

This revision lives on its own Alembic branch ("messaging"), so each service's
own revisions (its ``migrations/versions``) start from nothing and both
branches are upgraded together to ``heads``.

Revision ID: messaging_0001
Revises:
"""

from __future__ import annotations

from alembic import op

from dunning_runtime.messaging_tables import inbox, outbox, relay_lease

revision = "messaging_0001"
down_revision = None
branch_labels = ("messaging",)
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in (outbox, inbox, relay_lease):
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in (relay_lease, inbox, outbox):
        table.drop(bind)
