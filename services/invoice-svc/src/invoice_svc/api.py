"""invoice-svc's HTTP routes: the ERP's front door (DESIGN.md, invoice-svc).

Every POST here is idempotent under an ``Idempotency-Key`` by the runtime's
middleware (``dunning_runtime.idempotency``); the routes only add the natural
idempotency of invoice ids. Each route calls one use case (``commands``) and maps
its result to HTTP: a posted invoice's ``Created`` through ``dunning_runtime.batches``,
rows through ``views``, and rule errors from ``domain`` to problems in one place
(``dunning_runtime.problems.problem_of``, the router's route class).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events.common import BoundedDay, Identifier
from dunning_runtime.app import runtime_of
from dunning_runtime.auth import Tenant
from dunning_runtime.batches import STATUS, parse_items, respond, result_problem, tally
from dunning_runtime.idempotency import in_transaction
from dunning_runtime.pagination import Cursor, PageLimit, position_of
from dunning_runtime.problems import RuleErrorsAsProblems
from dunning_runtime.results import ItemResult, Outcome
from invoice_svc import commands
from invoice_svc.commands import Created
from invoice_svc.models import (
    BatchIn,
    BatchItemResult,
    BatchOut,
    DisputeIn,
    DisputeResolveIn,
    InvoiceIn,
    InvoiceOut,
    InvoicePage,
    VoidIn,
)
from invoice_svc.settings import InvoiceSettings
from invoice_svc.views import invoice_view

router = APIRouter(prefix="/v1/invoices", tags=["invoices"], route_class=RuleErrorsAsProblems)

InvoiceId = Annotated[Identifier, Path(description="The ERP's invoice id.")]


def _viewed(result: Created, now: datetime, posted: InvoiceIn) -> ItemResult[BaseModel]:
    """A posted invoice's result with the invoice as the API shows it (a new one's view
    takes the ``posted`` model's validated parts)."""
    lends = posted if result.outcome is Outcome.CREATED else None
    view = invoice_view(result.value, now, lends) if result.value is not None else None
    return ItemResult(result.outcome, view, result.differences, result.error)


@router.post(
    "",
    status_code=201,
    response_model=InvoiceOut,
    summary="Accept an invoice",
    responses={
        200: {"description": "The same invoice again: the first result"},
        409: {"description": "Same invoice_id, other content: the fields that differ"},
        422: {"description": "Invalid body: errors name each field"},
    },
)
async def create_invoice(body: InvoiceIn, request: Request, tenant: Tenant) -> JSONResponse:
    """Accept one invoice. Posting it again returns it with 200; the same id with other
    content is a 409 naming the fields that differ."""
    runtime = runtime_of(request, InvoiceSettings)
    scope = runtime.scope(tenant)
    grace = runtime.settings.grace_days_for(tenant)

    async def work(session: AsyncSession) -> ItemResult[BaseModel]:
        [created] = await commands.create_invoices(session, scope, [body], grace)
        return _viewed(created, scope.now, body)

    return respond(await in_transaction(runtime.database, work), "invoice", body.invoice_id)


@router.post(
    "/batch", response_model=BatchOut, summary="Accept up to 1,000 invoices, each on its own"
)
async def create_batch(body: BatchIn, request: Request, tenant: Tenant) -> BatchOut:
    """One result per item, in order: 201 created, 200 already accepted, 409 conflict,
    422 invalid. Valid items are accepted even when others are not."""
    runtime = runtime_of(request, InvoiceSettings)
    scope = runtime.scope(tenant)
    parsed = parse_items(
        body.invoices, InvoiceIn, collection="invoices", kind="invoice", id_field="invoice_id"
    )
    results = {
        r.index: BatchItemResult(
            index=r.index, invoice_id=r.resource_id, status=422, problem=r.problem
        )
        for r in parsed.refused
    }
    grace = runtime.settings.grace_days_for(tenant)

    async def work(session: AsyncSession) -> list[ItemResult[BaseModel]]:
        items = [item for _, item in parsed.valid]
        created = await commands.create_invoices(session, scope, items, grace)
        return [_viewed(c, scope.now, i) for c, i in zip(created, items, strict=True)]

    outcomes = await in_transaction(runtime.database, work) if parsed.valid else []
    for (index, item), outcome in zip(parsed.valid, outcomes, strict=True):
        problem = result_problem(outcome, "invoice", item.invoice_id)
        results[index] = BatchItemResult(
            index=index,
            invoice_id=item.invoice_id,
            status=STATUS[outcome.outcome],
            invoice=outcome.value,
            problem=problem.body() if problem else None,
        )
    final = [results[index] for index in sorted(results)]
    accepted, rejected = tally(r.status for r in final)
    return BatchOut(accepted=accepted, rejected=rejected, results=final)


@router.get("/{invoice_id}", response_model=InvoiceOut, summary="One invoice as it stands")
async def get_invoice(invoice_id: InvoiceId, request: Request, tenant: Tenant) -> InvoiceOut:
    """The invoice with its balance, status, dispute and days past due (as of the clock)."""
    runtime = runtime_of(request)
    row = await commands.get_invoice(runtime.database, tenant, invoice_id)
    return invoice_view(row, runtime.clock.now())


@router.get("", response_model=InvoicePage, summary="Invoices, filtered, a page at a time")
async def list_invoices(
    request: Request,
    tenant: Tenant,
    account_id: Annotated[Identifier | None, Query(description="Only this account's")] = None,
    status: Literal["open", "partially_paid", "paid", "void"] | None = None,
    due_before: Annotated[BoundedDay | None, Query(description="Due on or before")] = None,
    due_after: Annotated[BoundedDay | None, Query(description="Due on or after")] = None,
    cursor: Cursor = None,
    limit: PageLimit = 100,
) -> InvoicePage:
    """Invoices in the order they were accepted; ``next_cursor`` is null on the last page."""
    runtime = runtime_of(request)
    page = await commands.list_invoices(
        runtime.database,
        tenant,
        account_id=account_id,
        status=status,
        due_before=due_before,
        due_after=due_after,
        after=position_of(cursor),
        limit=limit,
    )
    now = runtime.clock.now()
    return InvoicePage(
        items=[invoice_view(row, now) for row in page.items], next_cursor=page.next_cursor
    )


@router.post("/{invoice_id}/void", response_model=InvoiceOut, summary="Void an unpaid invoice")
async def void_invoice(
    invoice_id: InvoiceId, request: Request, tenant: Tenant, body: VoidIn | None = None
) -> InvoiceOut:
    """Cancel the invoice: its balance becomes 0 (``balance_voided`` keeps what was owed).
    Voiding it again is a no-op."""
    scope = runtime_of(request).scope(tenant)
    reason = body.reason if body else ""
    async with runtime_of(request).database.transaction() as session:
        row = await commands.void_invoice(session, scope, invoice_id, reason)
        return invoice_view(row, scope.now)


@router.post("/{invoice_id}/dispute", response_model=InvoiceOut, summary="Open a dispute")
async def dispute_invoice(
    invoice_id: InvoiceId, body: DisputeIn, request: Request, tenant: Tenant
) -> InvoiceOut:
    """The customer disputes the invoice (``amount`` defaults to the whole balance);
    the disputed invoice is not chased until the dispute is resolved."""
    scope = runtime_of(request).scope(tenant)
    async with runtime_of(request).database.transaction() as session:
        row = await commands.dispute_invoice(session, scope, invoice_id, body.reason, body.amount)
        return invoice_view(row, scope.now)


@router.post(
    "/{invoice_id}/dispute/resolve", response_model=InvoiceOut, summary="Resolve the dispute"
)
async def resolve_dispute(
    invoice_id: InvoiceId, body: DisputeResolveIn, request: Request, tenant: Tenant
) -> InvoiceOut:
    """``upheld`` credits the disputed amount; ``rejected`` puts the invoice back in the chase."""
    scope = runtime_of(request).scope(tenant)
    async with runtime_of(request).database.transaction() as session:
        row = await commands.resolve_dispute(session, scope, invoice_id, body.resolution)
        return invoice_view(row, scope.now)
