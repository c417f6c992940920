"""What every service publishes on the ``api-keys`` topic: the state of a managed API key.

A key is created, rotated or revoked through the admin routes of any one service; that
service records it in its own table and publishes ``ApiKeyRecorded`` so that every
service (each with its own database) keeps the same keys. The event carries the key's
keyed hash (HMAC-SHA256 under ``DUNNING_KEY_PEPPER``), never the key itself.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from dunning_events import topics
from dunning_events.common import Instant
from dunning_events.envelope import Event

__all__ = ["ApiKeyRecorded", "KeyRole"]

#: Who a key speaks for: one tenant (the ``/v1`` routes of its data) or the platform's
#: admin (``/v1/admin/*``).
KeyRole = Literal["tenant", "admin"]

#: The form of a key id: 16 lower-case hex digits.
KEY_ID_PATTERN = r"^[0-9a-f]{16}$"


class ApiKeyRecorded(Event):
    """A managed API key as its service now holds it: created, rotated (an expiry set) or
    revoked. Consumers merge it into their own key table: the earliest expiry and the
    earliest revocation win, so events applied in any order, or twice, agree.

    ``account_id`` carries the key id (a producer sets it so): keys concern no account,
    and it keeps one key's events on one partition, in order.
    """

    event_type: ClassVar[str] = "ApiKeyRecorded"
    topic: ClassVar[str] = topics.API_KEYS

    key_id: str = Field(pattern=KEY_ID_PATTERN, description="The key's id (not a secret).")
    role: KeyRole = Field(description="tenant: a tenant's key; admin: the admin routes' key.")
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The tenant of a tenant key; null for an admin key.",
    )
    prefix: str = Field(
        min_length=1, max_length=40, description="The key's first characters, to recognise it."
    )
    digest: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="HMAC-SHA256 of the whole key under the platform's pepper, in hex.",
    )
    created_at: Instant = Field(description="When the key was created (wall clock).")
    expires_at: Instant | None = Field(
        default=None, description="From this instant on the key is refused; null: never."
    )
    revoked_at: Instant | None = Field(
        default=None, description="When the key was revoked; null while it is not."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.role == "tenant") != (self.tenant is not None):
            raise ValueError("a tenant key names its tenant; an admin key names none")
        return self
