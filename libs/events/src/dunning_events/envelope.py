"""The versioned event envelope, compatible with CloudEvents 1.0 (principle 8).

Context attributes: ``specversion``, ``id``, ``type``, ``source``, ``time``,
``subject`` (the account), ``datacontenttype``, ``dataschema``; extensions
``tenant``, ``schemaversion`` and the distributed-tracing ``traceparent`` /
``tracestate``. ``data`` is the event payload, an ``Event`` subclass.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SerializeAsAny

TYPE_PREFIX = "dunning."


class Event(BaseModel):
    """Base of every event payload. Subclasses set the three class variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    topic: ClassVar[str]

    account_id: str = Field(
        min_length=1, max_length=200, description="The customer account; the envelope's subject."
    )

    @classmethod
    def cloudevent_type(cls) -> str:
        """The CloudEvents ``type``, e.g. ``dunning.InvoiceIssued.v1``."""
        return f"{TYPE_PREFIX}{cls.event_type}.v{cls.version}"

    @classmethod
    def dataschema(cls) -> str:
        """The URN of this event's JSON Schema."""
        return f"urn:dunning:events:{cls.event_type}:v{cls.version}"


class Envelope(BaseModel):
    """One event as published: CloudEvents context attributes plus the payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=64)
    type: str = Field(description="e.g. dunning.InvoiceIssued.v1")
    source: str = Field(
        min_length=1, description="URI-reference of the producer, e.g. /invoice-svc"
    )
    time: AwareDatetime
    subject: str = Field(min_length=1, description="The account id")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    tenant: str = Field(min_length=1, max_length=100, description="Tenant owning the event")
    schemaversion: int = Field(ge=1)
    traceparent: str | None = Field(default=None, description="W3C trace context")
    tracestate: str | None = None
    data: SerializeAsAny[Event]

    @property
    def partition_key(self) -> str:
        """``tenant:account``: one account's events share a partition and stay in order."""
        return f"{self.tenant}:{self.subject}"

    def model_post_init(self, _context: Any) -> None:
        if self.type != self.data.cloudevent_type():
            raise ValueError(f"type {self.type!r} does not match the data's type")
        if self.subject != self.data.account_id:
            raise ValueError("subject must be the data's account_id")


def make_envelope(
    data: Event,
    *,
    tenant: str,
    source: str,
    time: datetime,
    id: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Envelope:
    """Wrap ``data`` in an envelope with every attribute derived from it."""
    return Envelope(
        id=id or str(uuid.uuid4()),
        type=data.cloudevent_type(),
        source=source,
        time=time,
        subject=data.account_id,
        dataschema=data.dataschema(),
        tenant=tenant,
        schemaversion=data.version,
        traceparent=traceparent,
        tracestate=tracestate,
        data=data,
    )
