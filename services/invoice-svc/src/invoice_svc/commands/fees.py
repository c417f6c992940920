"""Late fees charged by dunning-svc (``LateFeeAssessed``) become fee invoices."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, LateFeeAssessed
from dunning_runtime.errors import EventRejected
from dunning_runtime.outbox import Outbox
from dunning_runtime.results import Outcome
from dunning_runtime.scope import Scope
from invoice_svc import NAME
from invoice_svc.commands.invoices import create_invoices
from invoice_svc.models import InvoiceIn


def fee_invoice(fee: LateFeeAssessed) -> InvoiceIn:
    """The fee invoice a ``LateFeeAssessed`` asks for: kind ``fee`` (in its metadata), due
    on the day it was charged, on the account the fee is for, chased like any invoice."""
    amount = fee.amount
    return InvoiceIn(
        invoice_id=fee.fee_invoice_id,
        account_id=fee.account_id,
        account_name=fee.account_name,
        contact=fee.contact,
        currency=amount.currency,
        amount_due=amount.amount,
        issue_date=fee.assessed_on,
        due_date=fee.assessed_on,
        segment=fee.segment,
        timezone=fee.timezone,
        locale=fee.locale,
        lines=[
            {
                "description": f"Late fee ({fee.stage}) on {fee.invoice_id}",
                "quantity": "1",
                "unit_price": str(amount.amount),
                "amount": str(amount.amount),
            }
        ],
        metadata={"kind": "fee", "fee_for": fee.invoice_id, "stage": fee.stage},
    )


async def create_fee_invoices(
    session: AsyncSession,
    outbox: Outbox,
    grace_days_for: Callable[[str], int],
    envelopes: Sequence[Envelope],
) -> None:
    """Turn each ``LateFeeAssessed`` of the chunk into its fee invoice (one transaction;
    a fee seen before is a replay of the same invoice and changes nothing).

    A fee that cannot be an invoice is refused (``EventRejected``); one whose id was
    taken by other content stays as it is.
    """
    for envelope in envelopes:
        if not isinstance(envelope.data, LateFeeAssessed):
            continue
        try:
            item = fee_invoice(envelope.data)
        except ValueError as exc:
            raise EventRejected(f"the fee cannot be an invoice: {exc}", envelope.id) from exc
        scope = Scope.of(NAME, envelope.tenant, envelope.time, outbox)
        [created] = await create_invoices(session, scope, [item], grace_days_for(envelope.tenant))
        if created.outcome is Outcome.INVALID:
            # The same reason the 422 of the HTTP edge gives as its detail.
            raise EventRejected("fee invoice refused: The invoice is not valid.", envelope.id)
