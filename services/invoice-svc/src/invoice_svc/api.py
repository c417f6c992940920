"""invoice-svc's HTTP routes: the ERP's front door (DESIGN.md, invoice-svc).

Every POST here is idempotent under an ``Idempotency-Key`` by the runtime's
middleware (``dunning_runtime.idempotency``); the routes only add the natural
idempotency of invoice ids. Rule errors from ``domain`` become problems in one
place, ``problem_of`` (the router's ``rule_errors_route``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events.common import BoundedDay, Identifier
from dunning_runtime.app import runtime_of
from dunning_runtime.auth import Tenant
from dunning_runtime.idempotency import conflict_problem, in_transaction
from dunning_runtime.pagination import decode_cursor, encode_cursor
from dunning_runtime.problems import Problem, field_problem, rule_errors_route, validation_errors
from dunning_runtime.scope import Scope
from invoice_svc import commands
from invoice_svc.commands import Created, Outcome
from invoice_svc.domain import InvoiceNotFound, InvoiceRuleError, InvoiceStateConflict
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


def problem_of(error: InvoiceRuleError) -> Problem:
    """The one mapping of invoice rule errors to problems."""
    if isinstance(error, InvoiceNotFound):
        return Problem(404, str(error), type_=error.code)
    if isinstance(error, InvoiceStateConflict):
        return Problem(409, str(error), type_=error.code)
    field = f"body.{error.field}" if error.field else "body"
    return field_problem(str(error), field)


router = APIRouter(
    prefix="/v1/invoices",
    tags=["invoices"],
    route_class=rule_errors_route(InvoiceRuleError, problem_of),
)

InvoiceId = Annotated[Identifier, Path(description="The ERP's invoice id.")]


def grace_days(request: Request, tenant: str) -> int:
    """The tenant's grace days before an invoice counts as overdue."""
    settings = runtime_of(request).settings
    assert isinstance(settings, InvoiceSettings)  # ServiceSpec.settings_type
    return settings.grace_days_for(tenant)


def scope_of(request: Request, tenant: str) -> Scope:
    """The tenant and instant a request acts at."""
    runtime = runtime_of(request)
    return commands.scope_for(tenant, runtime.clock.now(), runtime.outbox)


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
    runtime = runtime_of(request)
    scope = scope_of(request, tenant)
    grace = grace_days(request, tenant)

    async def work(session: AsyncSession) -> Posted:
        [created] = await commands.create_invoices(session, scope, [body], grace)
        return _posted(created, scope.now)

    status, invoice, problem = await in_transaction(runtime.database, work)
    if problem is not None:
        raise problem
    assert invoice is not None
    return JSONResponse(invoice.model_dump(mode="json"), status_code=status)


@router.post(
    "/batch", response_model=BatchOut, summary="Accept up to 1,000 invoices, each on its own"
)
async def create_batch(body: BatchIn, request: Request, tenant: Tenant) -> BatchOut:
    """One result per item, in order: 201 created, 200 already accepted, 409 conflict,
    422 invalid. Valid items are accepted even when others are not."""
    runtime = runtime_of(request)
    scope = scope_of(request, tenant)
    results: list[BatchItemResult | None] = [None] * len(body.invoices)
    valid: list[tuple[int, InvoiceIn]] = []
    for index, raw in enumerate(body.invoices):
        try:
            valid.append((index, InvoiceIn.model_validate(raw)))
        except ValidationError as exc:
            raw_id = raw.get("invoice_id") if isinstance(raw, dict) else None
            results[index] = BatchItemResult(
                index=index,
                invoice_id=raw_id if isinstance(raw_id, str) else None,
                status=422,
                problem=_item_problem(index, exc),
            )
    grace = grace_days(request, tenant)

    async def work(session: AsyncSession) -> list[Posted]:
        items = [item for _, item in valid]
        created = await commands.create_invoices(session, scope, items, grace)
        return [_posted(c, scope.now) for c in created]

    outcomes = await in_transaction(runtime.database, work) if valid else []
    for (index, item), (status, invoice, problem) in zip(valid, outcomes, strict=True):
        results[index] = BatchItemResult(
            index=index,
            invoice_id=item.invoice_id,
            status=status,
            invoice=invoice,
            problem=problem.body() if problem else None,
        )
    final = [r for r in results if r is not None]
    accepted = sum(1 for r in final if r.status in (200, 201))
    return BatchOut(accepted=accepted, rejected=len(final) - accepted, results=final)


#: One posted invoice as HTTP: its status code, the invoice or the problem.
Posted = tuple[int, InvoiceOut | None, Problem | None]

_STATUS = {Outcome.CREATED: 201, Outcome.REPLAYED: 200}


def _posted(created: Created, now: datetime) -> Posted:
    """Map a ``Created`` to HTTP: 201 new, 200 the same invoice again, 409 same id other
    content, 422 invalid."""
    if created.outcome is Outcome.CONFLICT:
        return 409, None, conflict_problem("invoice", created.invoice_id, list(created.differing))
    if created.outcome is Outcome.INVALID:
        assert created.error is not None
        return 422, None, _invalid(created.error)
    assert created.row is not None
    return _STATUS[created.outcome], invoice_view(created.row, now), None


def _invalid(exc: ValueError) -> Problem:
    errors = (
        validation_errors(exc.errors())
        if isinstance(exc, ValidationError)
        else [{"field": "body", "message": str(exc), "type": "value_error"}]
    )
    return Problem(422, "The invoice is not valid.", type_="validation-error", errors=errors)


def _item_problem(index: int, exc: ValidationError) -> dict[str, Any]:
    errors = validation_errors(exc.errors())
    for error in errors:
        error["field"] = f"body.invoices[{index}].{error['field']}".rstrip(".")
    return Problem(422, "The invoice is not valid.", type_="validation-error", errors=errors).body()


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
    cursor: Annotated[
        str | None, Query(max_length=64, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> InvoicePage:
    """Invoices in the order they were accepted; ``next_cursor`` is null on the last page."""
    runtime = runtime_of(request)
    rows, after = await commands.list_invoices(
        runtime.database,
        tenant,
        account_id=account_id,
        status=status,
        due_before=due_before,
        due_after=due_after,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    now = runtime.clock.now()
    return InvoicePage(
        items=[invoice_view(row, now) for row in rows],
        next_cursor=encode_cursor(after) if after is not None else None,
    )


@router.post("/{invoice_id}/void", response_model=InvoiceOut, summary="Void an unpaid invoice")
async def void_invoice(
    invoice_id: InvoiceId, request: Request, tenant: Tenant, body: VoidIn | None = None
) -> InvoiceOut:
    """Cancel the invoice: its balance becomes 0 (``balance_voided`` keeps what was owed).
    Voiding it again is a no-op."""
    scope = scope_of(request, tenant)
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
    scope = scope_of(request, tenant)
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
    scope = scope_of(request, tenant)
    async with runtime_of(request).database.transaction() as session:
        row = await commands.resolve_dispute(session, scope, invoice_id, body.resolution)
        return invoice_view(row, scope.now)
