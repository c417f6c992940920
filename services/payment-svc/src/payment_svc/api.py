"""payment-svc's HTTP routes: payments from the ERP, notices from processors.

Every POST here is idempotent under an ``Idempotency-Key`` by the runtime's
middleware; the routes add the natural idempotency of payment ids (and of a
processor's event ids). Rule errors from ``domain`` become problems in one place,
the runtime's ``problem_of`` (the router's ``RuleErrorsAsProblems``); a use case's
``ItemResult`` becomes a status or a problem through ``dunning_runtime.batches``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events.common import Identifier
from dunning_runtime import signing
from dunning_runtime.app import runtime_of
from dunning_runtime.auth import Tenant
from dunning_runtime.batches import STATUS, parse_items, respond, result_problem, tally, within_item
from dunning_runtime.idempotency import in_transaction
from dunning_runtime.openapi import SIGNATURE_SCHEME
from dunning_runtime.pagination import Cursor, PageLimit, position_of
from dunning_runtime.problems import Problem, RuleErrorsAsProblems, validation_errors
from dunning_runtime.scope import Scope
from payment_svc import commands, views
from payment_svc.commands import Received
from payment_svc.domain import PaymentIn as DomainPayment
from payment_svc.domain import PaymentRuleError, Posted, Requested
from payment_svc.models import (
    AccountCreditOut,
    BatchIn,
    BatchItemResult,
    BatchOut,
    PaymentIn,
    PaymentOut,
    PaymentPage,
    ReverseIn,
    WebhookIn,
    WebhookOut,
    WebhookPayment,
    WebhookReversal,
)
from payment_svc.settings import PaymentSettings

router = APIRouter(route_class=RuleErrorsAsProblems)

PaymentId = Annotated[Identifier, Path(description="The payment's id.")]
AccountId = Annotated[Identifier, Path(description="The customer account.")]


def scope_of(request: Request, tenant: str) -> Scope:
    """The tenant and instant a request acts at."""
    return runtime_of(request).scope(tenant)


@router.post(
    "/v1/payments",
    status_code=201,
    response_model=PaymentOut,
    tags=["payments"],
    summary="Record a payment and apply it",
    responses={
        200: {"description": "The same payment again: the first result"},
        409: {"description": "Same payment_id, other content: the fields that differ"},
        422: {"description": "Invalid body or allocation: errors name each field"},
    },
)
async def create_payment(body: PaymentIn, request: Request, tenant: Tenant) -> JSONResponse:
    """Record one payment. Its allocations are honoured; without them it pays the open
    invoices oldest due date first; the rest is credit for the account's next invoices."""
    runtime = runtime_of(request)
    scope = scope_of(request, tenant)

    async def work(session: AsyncSession) -> Received:
        [result] = await commands.receive_payments(session, scope, [_posted(body)])
        return result

    result = await in_transaction(runtime.database, work)
    return respond(views.payment_result(result), "payment", body.payment_id)


def _posted(item: PaymentIn) -> Posted:
    """A payment body as the rules and the use case take it."""
    allocations = None
    if item.allocations is not None:
        allocations = tuple(Requested(a.invoice_id, a.amount) for a in item.allocations)
    payment = DomainPayment(
        payment_id=item.payment_id,
        currency=item.currency,
        amount=item.amount,
        received_at=item.received_at,
        allocations=allocations,
        account_id=item.account_id,
    )
    return Posted(
        payment=payment,
        method=item.method,
        reference=item.reference,
        metadata=item.metadata,
        request=item.model_dump(mode="json"),
    )


@router.post(
    "/v1/payments/batch",
    response_model=BatchOut,
    tags=["payments"],
    summary="Record up to 1,000 payments, each on its own, in order",
)
async def create_batch(body: BatchIn, request: Request, tenant: Tenant) -> BatchOut:
    """One result per item, in order: 201 created, 200 already accepted, 409 conflict,
    422 invalid. Valid items are accepted even when others are not; each sees the
    allocations of the items before it."""
    runtime = runtime_of(request)
    scope = scope_of(request, tenant)
    parsed = parse_items(
        body.payments, PaymentIn, collection="payments", kind="payment", id_field="payment_id"
    )
    results: list[BatchItemResult | None] = [None] * len(body.payments)
    for refused in parsed.refused:
        results[refused.index] = BatchItemResult(
            index=refused.index,
            payment_id=refused.resource_id,
            status=422,
            problem=refused.problem,
        )

    async def work(session: AsyncSession) -> list[Received]:
        items = [_posted(item) for _, item in parsed.valid]
        return await commands.receive_payments(session, scope, items)

    outcomes = await in_transaction(runtime.database, work) if parsed.valid else []
    for (index, item), outcome in zip(parsed.valid, outcomes, strict=True):
        problem = result_problem(outcome, "payment", item.payment_id)
        results[index] = BatchItemResult(
            index=index,
            payment_id=item.payment_id,
            status=STATUS[outcome.outcome],
            payment=views.payment_out(outcome.value) if outcome.value else None,
            problem=within_item(problem.body(), "payments", index) if problem else None,
        )
    final = [r for r in results if r is not None]
    accepted, rejected = tally(r.status for r in final)
    return BatchOut(accepted=accepted, rejected=rejected, results=final)


@router.get(
    "/v1/payments/{payment_id}",
    response_model=PaymentOut,
    tags=["payments"],
    summary="One payment with its allocations, credit and status",
)
async def get_payment(payment_id: PaymentId, request: Request, tenant: Tenant) -> PaymentOut:
    """The payment, each invoice it paid (when received or later from its credit) and
    the discount taken there, what it holds for invoices not yet known, its credit."""
    async with runtime_of(request).database.sessions() as session:
        return views.payment_out(await commands.load(session, tenant, payment_id))


@router.get(
    "/v1/payments",
    response_model=PaymentPage,
    tags=["payments"],
    summary="Payments, filtered, a page at a time",
)
async def list_payments(
    request: Request,
    tenant: Tenant,
    account_id: Annotated[Identifier | None, Query(description="Only this account's")] = None,
    status: Literal["applied", "partially_applied", "unapplied", "reversed"] | None = None,
    cursor: Cursor = None,
    limit: PageLimit = 100,
) -> PaymentPage:
    """Payments in the order they were recorded; ``next_cursor`` is null on the last page."""
    after = position_of(cursor)
    async with runtime_of(request).database.sessions() as session:
        only = commands.PaymentFilter(account_id=account_id, status=status)
        page = await commands.list_payments(session, tenant, only, after, limit)
    return PaymentPage(
        items=[views.payment_out(p) for p in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/v1/payments/{payment_id}/reverse",
    response_model=PaymentOut,
    tags=["payments"],
    summary="Reverse a payment (bounced check, chargeback)",
    responses={409: {"description": "The payment is already reversed"}},
)
async def reverse_payment(
    payment_id: PaymentId, body: ReverseIn, request: Request, tenant: Tenant
) -> PaymentOut:
    """Every invoice the payment paid owes that money again, and the discount taken with
    it; its credit is gone. A second reversal is a 409."""
    scope = scope_of(request, tenant)
    async with runtime_of(request).database.transaction() as session:
        reversed_ = await commands.reverse_payment(session, scope, payment_id, body.reason)
    return views.payment_out(reversed_)


@router.get(
    "/v1/accounts/{account_id}/credit",
    response_model=AccountCreditOut,
    tags=["credit"],
    summary="An account's unapplied credit per currency",
)
async def account_credit(
    account_id: AccountId, request: Request, tenant: Tenant
) -> AccountCreditOut:
    """Credit per currency, with the payments it comes from (oldest first, the order it
    is used in). An account without credit has an empty list."""
    async with runtime_of(request).database.sessions() as session:
        rows = await commands.account_credit(session, tenant, account_id)
    return views.credit_view(account_id, rows)


# -- webhooks ----------------------------------------------------------------------

WEBHOOKS = Counter(
    "dunning_webhooks_total",
    "Processor webhooks by provider (configured ones; 'unknown' otherwise) and outcome "
    "(recorded, already_recorded, reversed, already_reversed, replayed, "
    "invalid_signature, invalid, refused)",
    ["provider", "outcome"],
)

Provider = Annotated[
    str,
    Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$", description="The processor, e.g. stripe"),
]


def _unsigned(detail: str) -> Problem:
    return Problem(
        401,
        detail,
        type_="invalid-signature",
        headers={"WWW-Authenticate": f'{signing.HEADER} realm="webhooks"'},
    )


@router.post(
    "/v1/webhooks/{provider}",
    response_model=WebhookOut,
    tags=["webhooks"],
    summary="A processor's signed payment notice",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": WebhookIn.model_json_schema()}},
        },
        # Signed, not keyed: the document must not ask a processor for a Bearer key.
        "security": [{SIGNATURE_SCHEME: []}],
    },
    responses={
        401: {"description": "Missing, malformed, stale (over 5 minutes) or wrong signature"},
        404: {"description": "No tenant has a secret for this provider, or unknown payment"},
    },
)
async def webhook(provider: Provider, request: Request) -> WebhookOut:
    """A notice signed with ``Dunning-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
    "<t>.<body>">`` under a secret of the provider (docs/payment-svc.md). The secret that
    verifies names the tenant. A replayed event id returns the first result (200)."""
    runtime = runtime_of(request, PaymentSettings)
    settings = runtime.settings
    secrets = settings.secrets_for(provider)
    if not secrets:
        WEBHOOKS.labels("unknown", "refused").inc()
        raise Problem(404, f"No webhook secret is configured for {provider!r}.", type_="not-found")
    raw = await request.body()
    now = runtime.clock.now().timestamp()
    try:
        secret = signing.verify(
            [s for _, s in secrets],
            request.headers.get(signing.HEADER),
            raw,
            now,
            settings.webhook_tolerance_s,
        )
    except signing.SignatureError as error:
        WEBHOOKS.labels(provider, "invalid_signature").inc()
        raise _unsigned(str(error)) from error
    tenant = next(t for t, s in secrets if s == secret)
    try:
        notice = _notice(provider, raw)
    except Problem:
        WEBHOOKS.labels(provider, "invalid").inc()
        raise
    scope = scope_of(request, tenant)

    def answer(applied: commands.WebhookApplied) -> dict[str, Any]:
        return views.webhook_out(applied).model_dump(mode="json")

    async def work(session: AsyncSession) -> commands.WebhookRecorded:
        recorded = await commands.record_webhook(session, scope, notice, answer)
        if recorded.refused is not None:  # raised here, so nothing of it commits
            # Refused by the rules or the event's checks; a notice is never a conflict
            # (any content replays), so the id only names the notice.
            problem = result_problem(recorded.refused, "payment", notice.event_id)
            assert problem is not None
            raise problem
        return recorded

    try:
        recorded = await in_transaction(runtime.database, work)
    except (Problem, PaymentRuleError):
        WEBHOOKS.labels(provider, "refused").inc()
        raise
    out = WebhookOut.model_validate(recorded.answer)
    WEBHOOKS.labels(provider, "replayed" if recorded.replayed else out.outcome).inc()
    return out


def _notice(provider: str, raw: bytes) -> commands.Notice:
    """The verified body as a notice; a 422 naming the fields otherwise."""
    try:
        notice = WebhookIn.model_validate(json.loads(raw))
    except ValidationError as exc:
        raise _invalid(exc, "body") from None
    except ValueError:  # not JSON at all
        raise _invalid(None, "body") from None
    try:
        if notice.type == "payment.succeeded":
            payment = _posted(WebhookPayment.model_validate(notice.data))
            return commands.Notice(provider, notice.id, notice.type, payment=payment)
        reversal = WebhookReversal.model_validate(notice.data)
    except ValidationError as exc:
        raise _invalid(exc, "body.data") from None
    return commands.Notice(
        provider, notice.id, notice.type, reversal=(reversal.payment_id, reversal.reason)
    )


def _invalid(exc: ValidationError | None, prefix: str) -> Problem:
    if exc is None:
        errors = [{"field": prefix, "message": "is not JSON", "type": "json_invalid"}]
    else:
        errors = validation_errors(exc.errors())
        for error in errors:
            error["field"] = f"{prefix}.{error['field']}".rstrip(".")
    return Problem(
        422,
        "The notice is not valid.",
        type_="validation-error",
        title="Invalid request",
        errors=errors,
    )
