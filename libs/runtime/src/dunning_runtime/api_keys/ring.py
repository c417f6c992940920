"""Verifying a Bearer key: the ring of keys a process accepts, in memory."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from dunning_runtime.api_keys.format import digest_of, hashed_digest, key_id_of
from dunning_runtime.api_keys.records import KeyRecord
from dunning_runtime.settings import ServiceSettings


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
            if (digest := hashed_digest(key)) is not None
        }
        self._hashed_admin = hashed_digest(settings.admin_key.get_secret_value())

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
