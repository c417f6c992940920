"""Managed API keys: created, listed, rotated and revoked at runtime, stored hashed.

A key looks like ``dk_<key id>_<secret>``: the id is 16 hex digits (not a secret; it
names the key in lists and URLs), the secret 32 random bytes in base64url. It is shown
once, when it is created. Each service stores, per key, its id, tenant (or the admin
role), a display prefix, an HMAC-SHA256 of the whole key under ``DUNNING_KEY_PEPPER``,
and when it was created, expires and was revoked (``messaging_tables.api_keys``).

Why a keyed hash and not a slow one: the secrets are 256 random bits, so there is no
dictionary to try and a slow hash would add nothing but milliseconds to every request;
keyed under the pepper, which lives in the services' settings and never in a database or
on the bus, a stolen table (or a read of the api-keys topic) cannot even be checked
against a guess.

Every service knows every key although each has its own database: the service that takes
an admin call writes its own table and publishes ``ApiKeyRecorded`` through its outbox;
every service (itself included) merges it into its table (``apply_event``). Each process
keeps a ``KeyRing`` in memory, reloaded from its own table every ``REFRESH_INTERVAL_S``,
so verifying a key is a dict lookup and one HMAC, never a database round trip, and a
revoked key is refused by every replica within about a second of the event reaching its
service. Expiry and revocation are wall-clock instants, never the manual clock's.

The bootstrap keys of the settings (``DUNNING_API_KEYS``, ``DUNNING_ADMIN_KEY``) stay
valid besides the managed ones. Either may be given in its stored form,
``hmac-sha256:<hex>`` (``stored_form``, ``dunning keys hash``), so that the deployment's
configuration holds no usable key either.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, make_envelope, topics
from dunning_events.common import Instant
from dunning_events.keys import KEY_ID_PATTERN, ApiKeyRecorded, KeyRole
from dunning_runtime.auth import Admin
from dunning_runtime.consumer import Subscription
from dunning_runtime.db import Database, utc
from dunning_runtime.errors import EventRejected
from dunning_runtime.messaging_tables import api_keys
from dunning_runtime.problems import Problem, field_problem
from dunning_runtime.settings import HASHED_KEY_PREFIX, ServiceSettings, is_hashed

if TYPE_CHECKING:
    from dunning_runtime.app import Runtime

log = logging.getLogger(__name__)

KEY_PREFIX = "dk_"
#: Random bytes of a key's secret: 256 bits.
SECRET_BYTES = 32
#: Characters of the secret kept in the display prefix (24 of its 256 bits).
PREFIX_SECRET_CHARS = 4
#: How often each process reloads its keys from its own table.
REFRESH_INTERVAL_S = 1.0
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=30)
#: The envelope's tenant of an admin key's events (keys are keyed by their own id).
ADMIN_EVENT_TENANT = "platform"

TenantName = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
KeyId = Annotated[str, Path(pattern=KEY_ID_PATTERN, description="The key's id (16 hex digits).")]


def new_key() -> tuple[str, str]:
    """A new key's id and the whole key (``dk_<id>_<secret>``), to be shown once."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def key_id_of(key: str) -> str | None:
    """The id in a managed key's text, None when ``key`` is not shaped like one."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not secret or len(key_id) != 16 or key_id.strip("0123456789abcdef"):
        return None
    return key_id


def digest_of(pepper: bytes, key: str) -> str:
    """HMAC-SHA256 of the whole key under the pepper, in hex: what is stored."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def stored_form(pepper: bytes, key: str) -> str:
    """``hmac-sha256:<hex>``: how a bootstrap key may be given in the settings."""
    return HASHED_KEY_PREFIX + digest_of(pepper, key)


def _hashed_digest(value: str) -> bytes | None:
    """The digest of a bootstrap key given in its stored form; None for a plain key (or a
    malformed stored form, which then matches nothing)."""
    if not is_hashed(value):
        return None
    text = value[len(HASHED_KEY_PREFIX) :]
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        return None
    return digest if len(digest) == hashlib.sha256().digest_size else None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One managed key as stored: everything but the key itself."""

    key_id: str
    role: KeyRole
    tenant: str | None
    prefix: str
    digest: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        """Not revoked, and not (yet) expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def state(self, now: datetime) -> Literal["active", "expiring", "expired", "revoked"]:
        """What a list shows: revoked, expired, expiring (an end is set) or active."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None:
            return "expiring" if now < self.expires_at else "expired"
        return "active"

    def merged(self, other: KeyRecord) -> KeyRecord:
        """This record with what ``other`` knows: the earliest expiry and revocation win,
        so merging is order-free and idempotent (an end once set only comes sooner)."""
        return replace(
            self,
            expires_at=_earliest(self.expires_at, other.expires_at),
            revoked_at=_earliest(self.revoked_at, other.revoked_at),
        )

    def event(self) -> ApiKeyRecorded:
        """The event that tells every service this record."""
        return ApiKeyRecorded(
            account_id=self.key_id,
            key_id=self.key_id,
            role=self.role,
            tenant=self.tenant,
            prefix=self.prefix,
            digest=self.digest,
            created_at=self.created_at,
            expires_at=self.expires_at,
            revoked_at=self.revoked_at,
        )

    @classmethod
    def of_event(cls, event: ApiKeyRecorded) -> KeyRecord:
        """The record an event carries."""
        return cls(
            key_id=event.key_id,
            role=event.role,
            tenant=event.tenant,
            prefix=event.prefix,
            digest=event.digest,
            created_at=event.created_at,
            expires_at=event.expires_at,
            revoked_at=event.revoked_at,
        )

    @classmethod
    def of_row(cls, row: Any) -> KeyRecord:
        """The record of a table row."""
        created = utc(row.created_at)
        assert created is not None
        return cls(
            key_id=row.key_id,
            role=row.role,
            tenant=row.tenant,
            prefix=row.prefix,
            digest=row.digest,
            created_at=created,
            expires_at=utc(row.expires_at),
            revoked_at=utc(row.revoked_at),
        )


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


# -- verifying -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Usable:
    digest: bytes
    tenant: str | None  # None: an admin key
    expires_at: float | None  # POSIX seconds


class KeyRing:
    """Who a Bearer key speaks for: the bootstrap keys of the settings and the managed keys
    last loaded from the service's table (``load``). Constant time in the key's content."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._pepper = settings.key_pepper.get_secret_value().encode()
        self._managed: dict[str, _Usable] = {}
        # Bootstrap keys given hashed: digest -> tenant, and the admin key's digest.
        self._hashed_tenants = {
            digest: tenant
            for key, tenant in settings.api_keys.items()
            if (digest := _hashed_digest(key)) is not None
        }
        self._hashed_admin = _hashed_digest(settings.admin_key.get_secret_value())

    def digest(self, key: str) -> str:
        """The stored form of ``key``."""
        return digest_of(self._pepper, key)

    def load(self, records: Iterable[KeyRecord]) -> None:
        """Replace the managed keys by ``records`` (those revoked are left out)."""
        self._managed = {
            r.key_id: _Usable(
                bytes.fromhex(r.digest),
                r.tenant if r.role == "tenant" else None,
                r.expires_at.timestamp() if r.expires_at else None,
            )
            for r in records
            if r.revoked_at is None
        }

    def _managed_key(self, key: str) -> _Usable | None:
        key_id = key_id_of(key)
        usable = self._managed.get(key_id) if key_id else None
        if usable is None:
            return None
        if not hmac.compare_digest(self._mac(key), usable.digest):
            return None
        if usable.expires_at is not None and datetime.now(UTC).timestamp() >= usable.expires_at:
            return None
        return usable

    def tenant_for(self, key: str) -> str | None:
        """The tenant a tenant key belongs to; None for an admin key or an unknown one."""
        usable = self._managed_key(key)
        if usable is not None:
            return usable.tenant
        if self._hashed_tenants:
            # A dict lookup by the HMAC of the key: the digest is unpredictable, so the
            # lookup's timing tells nothing about a stored key.
            tenant = self._hashed_tenants.get(self._mac(key))
            if tenant is not None:
                return tenant
        return self.settings.tenant_for_key(key)

    def _mac(self, key: str) -> bytes:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).digest()

    def is_admin(self, key: str) -> bool:
        """True for the bootstrap admin key and for a usable managed admin key."""
        if self.settings.is_admin_key(key):
            return True
        if self._hashed_admin is not None and hmac.compare_digest(
            self._mac(key), self._hashed_admin
        ):
            return True
        usable = self._managed_key(key)
        return usable is not None and usable.tenant is None


# -- the table -------------------------------------------------------------------------------


async def find(session: AsyncSession, key_id: str, *, for_update: bool = False) -> KeyRecord | None:
    """The record of ``key_id``, None if the service has none."""
    query = select(api_keys).where(api_keys.c.key_id == key_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    return KeyRecord.of_row(row) if row is not None else None


async def record(session: AsyncSession, incoming: KeyRecord) -> KeyRecord:
    """Store ``incoming``, merged into what the table already holds of the key; the
    record as stored now."""
    known = await find(session, incoming.key_id, for_update=True)
    if known is None:
        await session.execute(insert(api_keys).values(**asdict(incoming)))
        return incoming
    merged = known.merged(incoming)
    if merged != known:
        await session.execute(
            update(api_keys)
            .where(api_keys.c.key_id == merged.key_id)
            .values(expires_at=merged.expires_at, revoked_at=merged.revoked_at)
        )
    return merged


async def all_records(session: AsyncSession) -> list[KeyRecord]:
    """Every key the service has, oldest first."""
    rows = await session.execute(select(api_keys).order_by(api_keys.c.created_at))
    return [KeyRecord.of_row(row) for row in rows]


async def refresh(ring: KeyRing, database: Database) -> None:
    """Reload ``ring`` from the service's table (the keys neither revoked nor expired)."""
    now = datetime.now(UTC)
    async with database.sessions() as session:
        rows = await session.execute(
            select(api_keys).where(
                api_keys.c.revoked_at.is_(None)
                & (api_keys.c.expires_at.is_(None) | (api_keys.c.expires_at > now))
            )
        )
        records = [KeyRecord.of_row(row) for row in rows]
        await session.rollback()
    ring.load(records)


async def keep_fresh(ring: KeyRing, database: Database) -> None:
    """Reload ``ring`` every ``REFRESH_INTERVAL_S`` (a supervised task: a failure, the
    database away, ends it and the supervisor restarts it; the last keys stay loaded)."""
    while True:
        await asyncio.sleep(REFRESH_INTERVAL_S)
        await refresh(ring, database)


# -- the event -------------------------------------------------------------------------------


async def apply_event(session: AsyncSession, envelope: Envelope) -> None:
    """Merge an ``ApiKeyRecorded`` into the service's table (handler of ``subscription``)."""
    if not isinstance(envelope.data, ApiKeyRecorded):
        raise EventRejected(f"{envelope.type} does not belong on {topics.API_KEYS}")
    await record(session, KeyRecord.of_event(envelope.data))


def subscription(service: str) -> Subscription:
    """What every service consumes of the api-keys topic, in its own group."""
    return Subscription(group=f"{service}-keys", topics=(topics.API_KEYS,), handler=apply_event)


# -- the admin routes ----------------------------------------------------------------------------


class NewKey(BaseModel):
    """A key to create: a tenant's (``tenant`` named) or an admin key (``role: admin``)."""

    model_config = ConfigDict(extra="forbid")

    role: KeyRole = Field(default="tenant", description="tenant (default) or admin.")
    tenant: TenantName | None = Field(
        default=None, description="The tenant of a tenant key; not given for an admin key."
    )
    # The events' Instant (years 2000-2199): a later expiry was a 500 when its event was
    # built, where it must be a 422 naming the field (found by the OpenAPI fuzz test).
    expires_at: Instant | None = Field(
        default=None, description="When the key stops working (an instant with an offset)."
    )

    @field_validator("expires_at", mode="before")
    @classmethod
    def _an_instant_text(cls, value: object) -> object:
        # pydantic would also take a number as Unix seconds; the document says a string.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 instant with an offset, as a string")
        return value


class Rotation(BaseModel):
    """How long the rotated key keeps working next to its successor."""

    model_config = ConfigDict(extra="forbid")

    overlap_s: StrictInt = Field(
        default=int(DEFAULT_OVERLAP.total_seconds()),
        ge=0,
        le=int(MAX_OVERLAP.total_seconds()),
        description="Seconds the old key stays valid from now (default one day, at most 30).",
    )


class KeyView(BaseModel):
    """A managed key as lists show it: never the key, never its hash."""

    key_id: str
    role: KeyRole
    tenant: str | None
    prefix: str = Field(description="The key's first characters, to recognise it.")
    state: Literal["active", "expiring", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: KeyRecord) -> KeyView:
        """The view of a record, its state as of now."""
        return cls(
            key_id=key.key_id,
            role=key.role,
            tenant=key.tenant,
            prefix=key.prefix,
            state=key.state(datetime.now(UTC)),
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


class IssuedKey(KeyView):
    """A key just created: the only time ``key`` is shown."""

    key: str = Field(description="The key itself. Shown once: store it now.")
    replaces: KeyView | None = Field(
        default=None, description="After a rotation: the old key, with its new expiry."
    )


class KeyList(BaseModel):
    """Every managed key the service knows, oldest first."""

    items: list[KeyView]


def key_routes() -> APIRouter:
    """``/v1/admin/keys``: create, list, rotate and revoke managed keys (admin key).

    There is no read of one key: a revoked key stays in the list (its state says so), and
    a ``GET`` of a path that was just ``DELETE``d would have to answer 404 for a key that
    is still listed.
    """
    router = APIRouter(prefix="/v1/admin/keys", tags=["admin (API keys)"])

    @router.post(
        "",
        status_code=201,
        summary="Create a key; the answer holds it, once",
        response_model=IssuedKey,
    )
    async def create_key(body: NewKey, request: Request, _admin: Admin) -> IssuedKey:
        if body.role == "tenant" and body.tenant is None:
            raise field_problem("A tenant key needs its tenant.", "body.tenant")
        if body.role == "admin" and body.tenant is not None:
            raise field_problem("An admin key belongs to no tenant.", "body.tenant")
        if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
            raise field_problem("The key would be expired already.", "body.expires_at")
        key, issued = _issue(_runtime(request), body.role, body.tenant, body.expires_at)
        await _store(_runtime(request), [issued])
        return IssuedKey(**KeyView.of(issued).model_dump(), key=key)

    @router.get("", summary="Every managed key: id, tenant or role, prefix, dates")
    async def list_keys(request: Request, _admin: Admin) -> KeyList:
        async with _runtime(request).database.sessions() as session:
            records = await all_records(session)
            await session.rollback()
        return KeyList(items=[KeyView.of(r) for r in records])

    @router.post(
        "/{key_id}/rotate",
        status_code=201,
        summary="A new key for the same tenant or role; the old one works overlap_s longer",
        response_model=IssuedKey,
    )
    async def rotate_key(
        key_id: KeyId, request: Request, _admin: Admin, body: Rotation | None = None
    ) -> IssuedKey:
        runtime = _runtime(request)
        overlap = timedelta(seconds=(body or Rotation()).overlap_s)
        async with runtime.database.sessions() as session:
            old = await find(session, key_id)
            await session.rollback()
        now = datetime.now(UTC)
        if old is None:
            raise _unknown(key_id)
        if not old.usable_at(now):
            raise Problem(
                409, f"Key {key_id} is {old.state(now)}: create a new one.", type_="key-not-usable"
            )
        key, issued = _issue(runtime, old.role, old.tenant, None)
        ending = replace(old, expires_at=_earliest(old.expires_at, now + overlap))
        stored = await _store(runtime, [issued, ending])
        return IssuedKey(**KeyView.of(issued).model_dump(), key=key, replaces=KeyView.of(stored[1]))

    @router.delete("/{key_id}", summary="Revoke a key: refused everywhere within seconds")
    async def revoke_key(key_id: KeyId, request: Request, _admin: Admin) -> KeyView:
        runtime = _runtime(request)
        async with runtime.database.sessions() as session:
            old = await find(session, key_id)
            await session.rollback()
        if old is None:
            raise _unknown(key_id)
        if old.revoked_at is not None:
            return KeyView.of(old)  # revoking twice changes nothing
        stored = await _store(runtime, [replace(old, revoked_at=datetime.now(UTC))])
        return KeyView.of(stored[0])

    return router


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _unknown(key_id: str) -> Problem:
    return Problem(404, f"No managed key {key_id}.", type_="not-found")


def _issue(
    runtime: Runtime, role: KeyRole, tenant: str | None, expires_at: datetime | None
) -> tuple[str, KeyRecord]:
    """A new key and its record (not stored yet)."""
    key_id, key = new_key()
    issued = KeyRecord(
        key_id=key_id,
        role=role,
        tenant=tenant if role == "tenant" else None,
        prefix=key[: len(KEY_PREFIX) + len(key_id) + 1 + PREFIX_SECRET_CHARS],
        digest=keyring_of(runtime).digest(key),
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    return key, issued


async def _store(runtime: Runtime, changes: Sequence[KeyRecord]) -> list[KeyRecord]:
    """Record ``changes`` in the service's table and outbox in one transaction, then reload
    this process's ring at once (the other services follow through the event)."""
    stored: list[KeyRecord] = []
    async with runtime.database.transaction() as session:
        for change in changes:
            merged = await record(session, change)
            stored.append(merged)
            envelope = make_envelope(
                merged.event(),
                tenant=merged.tenant or ADMIN_EVENT_TENANT,
                source=f"/{runtime.spec.name}",
                time=datetime.now(UTC),
            )
            await runtime.outbox.add(session, envelope)
    await refresh(keyring_of(runtime), runtime.database)
    now = datetime.now(UTC)
    for key in stored:
        # The id and prefix only: never the key, never its hash.
        log.info("API key %s (%s) recorded: %s", key.key_id, key.prefix, key.state(now))
    return stored


def keyring_of(runtime: Runtime) -> KeyRing:
    """The ring of the running service."""
    return runtime.keys
