"""The events notify-svc publishes, each continuing the trace of the request it answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dunning_events import Envelope, Event, make_envelope
from dunning_events.notifications import (
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
    SuppressionReason,
)
from dunning_runtime.scope import source_of

#: The CloudEvents source of notify-svc's events. Its envelopes carry the trace of the
#: request they answer, which the shared ``Scope`` does not, hence ``envelope`` below.
SOURCE = source_of("notify-svc")


def envelope(tenant: str, event: Event, now: datetime, row: Any | None = None) -> Envelope:
    """``event`` in its envelope; with the notice's ``row``, in the request's trace."""
    return make_envelope(
        event,
        tenant=tenant,
        source=SOURCE,
        time=now,
        traceparent=row["traceparent"] if row is not None else None,
        tracestate=row["tracestate"] if row is not None else None,
    )


def sent(row: Any, sent_at: datetime, provider_message_id: str | None) -> NotificationSent:
    """``NotificationSent`` for a stored notice."""
    return NotificationSent(
        account_id=row["account_id"],
        notification_id=row["notification_id"],
        channel=row["channel"],
        sent_at=sent_at,
        provider_message_id=provider_message_id,
    )


def failed(row: Any, error: str, attempts: int, *, permanent: bool) -> NotificationFailed:
    """``NotificationFailed`` for a stored notice."""
    return NotificationFailed(
        account_id=row["account_id"],
        notification_id=row["notification_id"],
        channel=row["channel"],
        error=error[:2000] or "unknown error",
        attempts=max(1, attempts),
        permanent=permanent,
    )


def suppressed(row: Any, reason: SuppressionReason, detail: str) -> NotificationSuppressed:
    """``NotificationSuppressed`` for a stored notice."""
    return NotificationSuppressed(
        account_id=row["account_id"],
        notification_id=row["notification_id"],
        channel=row["channel"],
        reason=reason,
        detail=detail[:1000],
    )
