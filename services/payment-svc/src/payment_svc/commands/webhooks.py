"""Processors' notices: applied once per event id, in the caller's transaction.

The answer to a notice is kept with its event id, so a replay gets the first answer
word for word. The use case does not know the answer's HTTP shape: the route passes
``answer``, which writes a ``WebhookApplied`` the way the API shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.results import Outcome
from dunning_runtime.scope import Scope
from payment_svc import storage
from payment_svc.commands.reading import load
from payment_svc.commands.receiving import Received, receive_payments
from payment_svc.commands.reversing import reverse_payment
from payment_svc.domain import AlreadyReversed, Posted
from payment_svc.storage import StoredPayment

WebhookOutcome = Literal["recorded", "already_recorded", "reversed", "already_reversed"]


@dataclass(frozen=True)
class Notice:
    """A verified processor notice: a payment (``payment.succeeded``) or a reversal."""

    provider: str
    event_id: str
    type: str
    payment: Posted | None = None
    reversal: tuple[str, str] | None = None  # payment_id, reason


@dataclass(frozen=True)
class WebhookApplied:
    """What a notice did, the first time it came."""

    event_id: str
    type: str
    outcome: WebhookOutcome
    payment: StoredPayment
    differences: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebhookRecorded:
    """The answer to a notice (the first one's, on a replay), or the payment the rules
    refused (``refused``: nothing was kept)."""

    answer: dict[str, Any] | None
    replayed: bool = False
    refused: Received | None = None


async def record_webhook(
    session: AsyncSession,
    scope: Scope,
    notice: Notice,
    answer: Callable[[WebhookApplied], dict[str, Any]],
) -> WebhookRecorded:
    """Apply a verified processor notice once per event id: a replay returns the first
    answer. A payment the ERP already posted (same payment_id) counts once."""
    tenant = scope.tenant
    stored = await storage.webhook_answer(session, tenant, notice.provider, notice.event_id)
    if stored is not None:
        return WebhookRecorded(stored, replayed=True)
    if notice.payment is not None:
        source = f"webhook:{notice.provider}"
        [result] = await receive_payments(
            session, scope, [notice.payment], source, any_content_replays=True
        )
        if result.value is None:
            return WebhookRecorded(None, refused=result)
        outcome: WebhookOutcome = (
            "recorded" if result.outcome is Outcome.CREATED else "already_recorded"
        )
        applied = WebhookApplied(
            notice.event_id, notice.type, outcome, result.value, result.differences
        )
    else:
        assert notice.reversal is not None
        payment_id, reason = notice.reversal
        try:
            view = await reverse_payment(session, scope, payment_id, reason)
            outcome = "reversed"
        except AlreadyReversed:
            view = await load(session, tenant, payment_id)
            outcome = "already_reversed"
        applied = WebhookApplied(notice.event_id, notice.type, outcome, view)
    out = answer(applied)
    await storage.add_webhook_answer(
        session, tenant, notice.provider, notice.event_id, out, scope.now
    )
    return WebhookRecorded(out)
