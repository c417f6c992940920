"""Overdue detection: announce each invoice that has passed its due date plus grace.

The clock, not a request, causes it: with tracing on, each invoice found overdue gets
an ``invoice overdue`` span that starts a trace of its own, linked to the trace the
invoice was created in (its stored ``traceparent``), and its ``InvoiceOverdue`` carries
that span's context.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from opentelemetry.trace import Span
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, Event
from dunning_runtime.app import Runtime
from dunning_runtime.locks import lock_accounts
from dunning_runtime.outbox import Outbox
from dunning_runtime.scope import Scope, emit, envelope_of
from dunning_runtime.telemetry import start_clock_span, tracing_enabled, with_trace_of
from invoice_svc import NAME, events, storage

#: Invoices per transaction. Each distinct account in a batch holds one advisory lock
#: on PostgreSQL, so this also bounds the locks one transaction takes.
BATCH = 500


async def detect_overdue_batch(
    session: AsyncSession, now: datetime, outbox: Outbox, batch_size: int
) -> int:
    """Publish ``InvoiceOverdue`` for up to ``batch_size`` invoices of any tenant due at
    ``now``; returns how many (``batch_size`` means: there may be more).

    The accounts are locked before the invoices are read, like every other writer, so
    an overdue notice and a payment or dispute on the same account never interleave.
    Each invoice is marked so it is never announced twice.
    """
    accounts = await storage.overdue_accounts(session, now, batch_size)
    if not accounts:
        return 0
    await lock_accounts(session, accounts)
    rows = await storage.claim_overdue(session, now, accounts, batch_size)
    if tracing_enabled():
        await _emit_traced(session, now, outbox, rows)
        return len(rows)
    by_tenant: dict[str, list[Event]] = {}
    for row in rows:
        by_tenant.setdefault(row["tenant"], []).append(events.overdue(row, now))
    for tenant, overdue in by_tenant.items():
        await emit(session, Scope.of(NAME, tenant, now, outbox), *overdue)
    return len(rows)


async def _emit_traced(
    session: AsyncSession, now: datetime, outbox: Outbox, rows: Sequence[RowMapping]
) -> None:
    """Each invoice's ``InvoiceOverdue`` in a trace of its own, linked to the invoice's."""
    spans: list[Span] = []
    staged: list[Envelope] = []
    for row in rows:
        span = start_clock_span(
            "invoice overdue",
            [row["traceparent"]],
            **{
                "dunning.tenant": row["tenant"],
                "dunning.account_id": row["account_id"],
                "dunning.invoice_id": row["invoice_id"],
            },
        )
        spans.append(span)
        scope = Scope.of(NAME, row["tenant"], now, outbox)
        staged.append(with_trace_of(envelope_of(scope, events.overdue(row, now)), span))
    try:
        await outbox.add(session, *staged)
    finally:
        for span in spans:
            span.end()


async def detect_overdue(runtime: Runtime) -> int:
    """Publish ``InvoiceOverdue`` for every invoice overdue as of the clock, a batch per
    transaction, and return how many; each invoice is announced once."""
    now = runtime.clock.now()
    total = 0
    while True:
        async with runtime.database.transaction() as session:
            count = await detect_overdue_batch(session, now, runtime.outbox, BATCH)
        total += count
        if count < BATCH:
            return total
