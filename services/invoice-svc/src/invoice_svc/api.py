"""invoice-svc's HTTP routes: the ERP's front door (DESIGN.md, invoice-svc)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime import requests
from dunning_runtime.app import Runtime, runtime_of
from dunning_runtime.auth import Tenant
from dunning_runtime.problems import Problem, validation_errors
from invoice_svc import commands
from invoice_svc.commands import Created, Scope
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
from invoice_svc.storage import invoices

router = APIRouter(prefix="/v1/invoices", tags=["invoices"])

ONE_INVOICE_BYTES = 256 * 1024
BATCH_BYTES = 32 * 1024 * 1024
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Optional: the same key with the same body replays the first response.",
    ),
]
T = TypeVar("T")


def scope_of(request: Request, tenant: str) -> Scope:
    """The tenant and instant a request acts at."""
    runtime = runtime_of(request)
    return Scope(tenant, runtime.clock.now(), runtime.outbox)


async def in_transaction(runtime: Runtime, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in a transaction; a unique-key race with a concurrent identical
    request is retried once, when the winner's row is visible and the request
    becomes a replay or a conflict."""
    try:
        async with runtime.database.transaction() as session:
            return await work(session)
    except IntegrityError:
        async with runtime.database.transaction() as session:
            return await work(session)


def _json(invoice: InvoiceOut) -> Any:
    return invoice.model_dump(mode="json")


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
    dependencies=[Depends(requests.body_limit(ONE_INVOICE_BYTES))],
)
async def create_invoice(
    body: InvoiceIn, request: Request, tenant: Tenant, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Accept one invoice. Posting it again returns it with 200; the same id with other
    content is a 409 naming the fields that differ."""
    runtime = runtime_of(request)
    scope = scope_of(request, tenant)
    fingerprint = requests.request_hash("POST /v1/invoices", body.model_dump(mode="json"))
    grace = runtime.settings.grace_days_for(tenant)

    async def work(session: AsyncSession) -> JSONResponse:
        if idempotency_key:
            stored = await requests.replay(session, tenant, idempotency_key, fingerprint)
            if stored is not None:
                return JSONResponse(stored.body, status_code=200)
        [result] = await commands.create_invoices(session, scope, [body], grace)
        if result.problem is not None:
            raise result.problem
        assert result.invoice is not None
        payload = _json(result.invoice)
        if idempotency_key:
            await requests.remember(
                session, tenant, idempotency_key, fingerprint, result.status, payload, scope.now
            )
        return JSONResponse(payload, status_code=result.status)

    return await in_transaction(runtime, work)


@router.post(
    "/batch",
    response_model=BatchOut,
    summary="Accept up to 1,000 invoices, each on its own",
    dependencies=[Depends(requests.body_limit(BATCH_BYTES))],
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
            errors = validation_errors(exc.errors())
            for error in errors:
                error["field"] = f"body.invoices[{index}].{error['field']}".rstrip(".")
            raw_id = raw.get("invoice_id") if isinstance(raw, dict) else None
            results[index] = BatchItemResult(
                index=index,
                invoice_id=raw_id if isinstance(raw_id, str) else None,
                status=422,
                problem=Problem(
                    422, "The invoice is not valid.", type_="validation-error", errors=errors
                ).body(),
            )
    grace = runtime.settings.grace_days_for(tenant)

    async def work(session: AsyncSession) -> list[Created]:
        return await commands.create_invoices(session, scope, [item for _, item in valid], grace)

    for (index, item), outcome in zip(valid, await in_transaction(runtime, work), strict=True):
        results[index] = BatchItemResult(
            index=index,
            invoice_id=item.invoice_id,
            status=outcome.status,
            invoice=outcome.invoice,
            problem=outcome.problem.body() if outcome.problem else None,
        )
    final = [r for r in results if r is not None]
    accepted = sum(1 for r in final if r.status in (200, 201))
    return BatchOut(accepted=accepted, rejected=len(final) - accepted, results=final)


@router.get("/{invoice_id}", response_model=InvoiceOut, summary="One invoice as it stands")
async def get_invoice(invoice_id: str, request: Request, tenant: Tenant) -> InvoiceOut:
    """The invoice with its balance, status, dispute and days past due (as of the clock)."""
    runtime = runtime_of(request)
    async with runtime.database.sessions() as session:
        row = await commands.load(session, tenant, invoice_id)
    return commands.invoice_view(row, runtime.clock.now())


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def _seq(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError:
        raise Problem(
            422,
            "The cursor is not one this API returned.",
            type_="validation-error",
            errors=[{"field": "query.cursor", "message": "not a valid cursor"}],
        ) from None


@router.get("", response_model=InvoicePage, summary="Invoices, filtered, a page at a time")
async def list_invoices(
    request: Request,
    tenant: Tenant,
    account_id: str | None = None,
    status: Literal["open", "partially_paid", "paid", "void"] | None = None,
    due_before: Annotated[date | None, Query(description="Due on or before this date")] = None,
    due_after: Annotated[date | None, Query(description="Due on or after this date")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> InvoicePage:
    """Invoices in the order they were accepted; ``next_cursor`` is null on the last page."""
    runtime = runtime_of(request)
    query = select(invoices).where(invoices.c.tenant == tenant)
    if account_id is not None:
        query = query.where(invoices.c.account_id == account_id)
    if status is not None:
        query = query.where(invoices.c.status == status)
    if due_before is not None:
        query = query.where(invoices.c.due_date <= due_before)
    if due_after is not None:
        query = query.where(invoices.c.due_date >= due_after)
    if cursor:
        query = query.where(invoices.c.seq > _seq(cursor))
    async with runtime.database.sessions() as session:
        rows = (
            (await session.execute(query.order_by(invoices.c.seq).limit(limit + 1)))
            .mappings()
            .all()
        )
    now = runtime.clock.now()
    page = rows[:limit]
    return InvoicePage(
        items=[commands.invoice_view(row, now) for row in page],
        next_cursor=_cursor(page[-1]["seq"]) if len(rows) > limit else None,
    )


@router.post("/{invoice_id}/void", response_model=InvoiceOut, summary="Void an unpaid invoice")
async def void_invoice(
    invoice_id: str, request: Request, tenant: Tenant, body: VoidIn | None = None
) -> InvoiceOut:
    """Cancel the invoice; nothing is owed on it afterwards. Voiding it again is a no-op."""
    scope = scope_of(request, tenant)
    reason = body.reason if body else ""
    async with runtime_of(request).database.transaction() as session:
        return await commands.void_invoice(session, scope, invoice_id, reason)


@router.post("/{invoice_id}/dispute", response_model=InvoiceOut, summary="Open a dispute")
async def dispute_invoice(
    invoice_id: str, body: DisputeIn, request: Request, tenant: Tenant
) -> InvoiceOut:
    """The customer disputes the invoice (``amount`` defaults to the whole balance);
    the disputed invoice is not chased until the dispute is resolved."""
    scope = scope_of(request, tenant)
    async with runtime_of(request).database.transaction() as session:
        return await commands.dispute_invoice(session, scope, invoice_id, body.reason, body.amount)


@router.post(
    "/{invoice_id}/dispute/resolve", response_model=InvoiceOut, summary="Resolve the dispute"
)
async def resolve_dispute(
    invoice_id: str, body: DisputeResolveIn, request: Request, tenant: Tenant
) -> InvoiceOut:
    """``upheld`` credits the disputed amount; ``rejected`` puts the invoice back in the chase."""
    scope = scope_of(request, tenant)
    async with runtime_of(request).database.transaction() as session:
        return await commands.resolve_dispute(session, scope, invoice_id, body.resolution)
