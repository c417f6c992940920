"""Tables of the transactional outbox and the idempotent-consumer inbox.

Every service has them in its own database (or schema), created by the shared
Alembic branch in ``migrations/messaging``. The revisions do not import these
definitions (each states its tables as they were then); a test checks that the
schema the revisions make is these tables.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from dunning_runtime.db import SequenceId as _Id

metadata = MetaData()

outbox = Table(
    "outbox",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer_group", String(200), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("topic", String(200), nullable=False),
    Column("outcome", String(20), nullable=False),  # applied | dead_lettered
    # Retention purges by it (messaging_0003 made the index).
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
)

# One relay publishes a service's outbox at a time, so rows go out in id order.
relay_lease = Table(
    "outbox_relay_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Responses to POSTs sent with an Idempotency-Key, replayed when the key comes again.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSON, nullable=False),
    # Wall-clock time of the first request; retention purges by it (messaging_0004).
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    # The instance (``Liveness.instance_id``) whose request holds an unfinished claim
    # (messaging_0005); null on claims made before owners were recorded.
    Column("owner", String(64), nullable=True),
)

# The manual clock's instant (DUNNING_CLOCK=manual), so a restarted service goes on at
# the simulated time instead of the wall clock (messaging_0006). One row.
manual_clock = Table(
    "manual_clock",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("now", DateTime(timezone=True), nullable=False),
)

# Managed API keys (dunning_runtime.api_keys, messaging_0007): the keyed hash of each key,
# never the key. Every service keeps all of them, fed by the api-keys topic.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("role", String(16), nullable=False),  # tenant | admin
    Column("tenant", String(100), nullable=True),  # null for an admin key
    Column("prefix", String(40), nullable=False),
    Column("digest", String(64), nullable=False),  # HMAC-SHA256 under DUNNING_KEY_PEPPER
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)
