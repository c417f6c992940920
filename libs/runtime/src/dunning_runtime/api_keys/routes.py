"""``/v1/admin/keys``: create, list, rotate and revoke managed keys (admin key)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from dunning_events import make_envelope
from dunning_events.common import Instant
from dunning_events.keys import KEY_ID_PATTERN, KeyRole
from dunning_runtime.api_keys.format import KEY_PREFIX, PREFIX_SECRET_CHARS, new_key
from dunning_runtime.api_keys.records import KeyRecord, earliest
from dunning_runtime.api_keys.ring import KeyRing
from dunning_runtime.api_keys.storage import all_records, find, record, refresh
from dunning_runtime.auth import Admin
from dunning_runtime.problems import Problem, field_problem

if TYPE_CHECKING:
    from dunning_runtime.app import Runtime

# The package's name, as before the split: log lines keep their logger.
log = logging.getLogger("dunning_runtime.api_keys")

DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=30)
#: The envelope's tenant of an admin key's events (keys are keyed by their own id).
ADMIN_EVENT_TENANT = "platform"

TenantName = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
KeyId = Annotated[str, Path(pattern=KEY_ID_PATTERN, description="The key's id (16 hex digits).")]


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
        ending = replace(old, expires_at=earliest(old.expires_at, now + overlap))
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
