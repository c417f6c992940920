"""One managed key as every service stores it: everything but the key itself."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from dunning_events.keys import ApiKeyRecorded, KeyRole
from dunning_runtime.db import utc


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
            expires_at=earliest(self.expires_at, other.expires_at),
            revoked_at=earliest(self.revoked_at, other.revoked_at),
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


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two optional instants (None when neither is set)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
