"""dunning-svc's HTTP routes: accounts, the worklist, timelines, manual actions,
policies and reports (DESIGN.md, dunning-svc).

Manual actions go through the same core as events (``commands.process``) under the
account lock; the core's rule errors and ``commands.AccountNotFound`` are the runtime's
shared rule errors, which the router's route class answers as problems. Every POST is
idempotent under an ``Idempotency-Key`` (the runtime's middleware).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from dunning_events.common import BoundedDay, FreeText, Identifier
from dunning_events.money import to_minor
from dunning_runtime.app import runtime_of
from dunning_runtime.auth import Tenant
from dunning_runtime.pagination import (
    Cursor,
    PageLimit,
    keyset_page,
    offset_of,
    offset_page,
    position_of,
)
from dunning_runtime.problems import (
    Problem,
    field_problem,
    rule_errors_route,
    validation_errors,
)
from dunning_svc import commands
from dunning_svc.commands import PolicyBook, Work, WorklistQuery
from dunning_svc.core import (
    AgreePlan,
    ApproveHandoff,
    ManualAction,
    Pause,
    RecordPromise,
    Resume,
    SetContacts,
    WriteOff,
)
from dunning_svc.models import (
    AccountOut,
    AgingReport,
    ApprovalIn,
    ContactsIn,
    DsoReport,
    PauseIn,
    PlanIn,
    PolicyIn,
    PolicyOut,
    PolicyVersions,
    PromiseIn,
    ResumeIn,
    TimelineEntry,
    TimelinePage,
    WorklistPage,
    WriteOffIn,
)
from dunning_svc.policy import Policy
from dunning_svc.views import (
    AgingTally,
    DsoTally,
    account_view,
    dso_period_start,
    policy_view,
    worklist_item,
)

#: Parsed policy versions shared by every request of this process.
BOOK = PolicyBook()


router = APIRouter(prefix="/v1", route_class=rule_errors_route())

AccountId = Annotated[Identifier, Path(description="The ERP's account id.")]
SegmentName = Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,50}$", description="Policy segment.")]
Actor = Annotated[
    FreeText | None,
    Header(
        alias="X-Actor",
        max_length=200,
        description="Who acts (e.g. collector:jo), for the timeline; default api.",
    ),
]


async def _act(
    request: Request,
    tenant: str,
    account_id: str,
    action: ManualAction,
    actor: str,
    *,
    status: int = 200,
) -> JSONResponse:
    """Run a manual action through the core and answer with the account."""
    runtime = runtime_of(request)
    now = runtime.clock.now()
    account = await commands.act(runtime, BOOK, Work(tenant, account_id, action, actor), now)
    view = account_view(account, now)
    return JSONResponse(view.model_dump(mode="json"), status_code=status)


# -- accounts ------------------------------------------------------------------------------


@router.get(
    "/accounts/{account_id}",
    response_model=AccountOut,
    tags=["accounts"],
    summary="Where an account stands",
)
async def get_account(account_id: AccountId, request: Request, tenant: Tenant) -> AccountOut:
    """Stage, balances per currency, pause, promise, plan, timer and open invoices."""
    runtime = runtime_of(request)
    account = await commands.read_account(runtime.database, tenant, account_id)
    return account_view(account, runtime.clock.now())


@router.get("/accounts", response_model=WorklistPage, tags=["accounts"], summary="The worklist")
async def worklist(
    request: Request,
    tenant: Tenant,
    stage: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,49}$")] = None,
    segment: Annotated[str | None, Query(pattern=r"^[a-z0-9_-]{1,50}$")] = None,
    min_overdue: Annotated[
        Decimal | None,
        Query(
            ge=0,
            lt=10**12,
            max_digits=20,
            decimal_places=4,
            description="Overdue balance at least this (summed over currencies)",
        ),
    ] = None,
    sort: Annotated[
        Literal["overdue", "days_past_due", "account"],
        Query(description="overdue: largest first; days_past_due: oldest first"),
    ] = "overdue",
    cursor: Cursor = None,
    limit: PageLimit = 100,
) -> WorklistPage:
    """Accounts to work on, filtered and sorted; ``next_cursor`` continues the list."""
    runtime = runtime_of(request)
    # A position in the sorted list: balances move, so a page may repeat or skip a line.
    offset = offset_of(cursor)
    wanted = WorklistQuery(stage, segment, min_overdue, sort)
    found = await commands.worklist(runtime.database, tenant, wanted, offset=offset, limit=limit)
    now = runtime.clock.now()
    page = offset_page(found, offset, limit)
    return WorklistPage(
        items=[worklist_item(account, now) for account in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/accounts/{account_id}/timeline",
    response_model=TimelinePage,
    tags=["accounts"],
    summary="Every input, decision, stage change, command and manual action",
)
async def get_timeline(
    account_id: AccountId,
    request: Request,
    tenant: Tenant,
    cursor: Cursor = None,
    limit: PageLimit = 200,
) -> TimelinePage:
    """Oldest first, with the reason and policy version of each decision."""
    runtime = runtime_of(request)
    after = position_of(cursor)
    found = await commands.timeline(runtime.database, tenant, account_id, after=after, limit=limit)
    page = keyset_page(found, limit, lambda r: r.seq)
    return TimelinePage(
        items=[
            TimelineEntry(
                at=r.at,
                kind=r.kind,
                summary=r.summary,
                actor=r.actor,
                policy_version=r.policy_version,
                data=r.data,
            )
            for r in page.items
        ],
        next_cursor=page.next_cursor,
    )


@router.post(
    "/accounts/{account_id}/promise-to-pay",
    response_model=AccountOut,
    status_code=201,
    tags=["actions"],
    summary="Record a promise to pay: escalation pauses until its date plus grace",
)
async def promise_to_pay(
    account_id: AccountId, body: PromiseIn, request: Request, tenant: Tenant, actor: Actor = None
) -> JSONResponse:
    """409 while another promise or a plan is open; 422 for a date in the past or too far."""
    action = RecordPromise(
        promise_id=body.promise_id or f"PTP-{uuid.uuid4().hex[:12]}",
        currency=body.currency,
        amount=to_minor(body.amount, body.currency),
        promised_date=body.promised_date,
        by=actor or "api",
    )
    return await _act(request, tenant, account_id, action, actor or "api", status=201)


@router.post(
    "/accounts/{account_id}/payment-plan",
    response_model=AccountOut,
    status_code=201,
    tags=["actions"],
    summary="Agree a payment plan: it replaces the ladder while installments are met",
)
async def payment_plan(
    account_id: AccountId, body: PlanIn, request: Request, tenant: Tenant, actor: Actor = None
) -> JSONResponse:
    """409 while another plan is running."""
    action = AgreePlan(
        plan_id=body.plan_id or f"PLAN-{uuid.uuid4().hex[:12]}",
        currency=body.currency,
        installments=tuple(
            (i.due_date, to_minor(i.amount, body.currency)) for i in body.installments
        ),
        by=actor or "api",
    )
    return await _act(request, tenant, account_id, action, actor or "api", status=201)


@router.post(
    "/accounts/{account_id}/pause",
    response_model=AccountOut,
    tags=["actions"],
    summary="Pause escalation, optionally until a date",
)
async def pause(
    account_id: AccountId, body: PauseIn, request: Request, tenant: Tenant, actor: Actor = None
) -> JSONResponse:
    """Nothing is sent while paused; ``until`` (a date in the account's time zone) resumes."""
    action = Pause(reason=body.reason, until=body.until, by=actor or "api")
    return await _act(request, tenant, account_id, action, actor or "api")


@router.post(
    "/accounts/{account_id}/resume",
    response_model=AccountOut,
    tags=["actions"],
    summary="Resume escalation (ends a pause, a promise or a plan)",
)
async def resume(
    account_id: AccountId,
    request: Request,
    tenant: Tenant,
    actor: Actor = None,
    body: ResumeIn | None = None,
) -> JSONResponse:
    """409 when the account is not paused."""
    return await _act(request, tenant, account_id, Resume(by=actor or "api"), actor or "api")


@router.post(
    "/accounts/{account_id}/handoff/approve",
    response_model=AccountOut,
    tags=["actions"],
    summary="Approve the handoff to collections the policy holds for approval",
)
async def approve_handoff(
    account_id: AccountId,
    request: Request,
    tenant: Tenant,
    actor: Actor = None,
    body: ApprovalIn | None = None,
) -> JSONResponse:
    """409 when no handoff waits for approval."""
    action = ApproveHandoff(by=actor or "api")
    return await _act(request, tenant, account_id, action, actor or "api")


@router.post(
    "/accounts/{account_id}/write-off",
    response_model=AccountOut,
    tags=["actions"],
    summary="Write the open balance off; nothing more is sent",
)
async def write_off(
    account_id: AccountId, body: WriteOffIn, request: Request, tenant: Tenant, actor: Actor = None
) -> JSONResponse:
    """409 when already written off or nothing is open."""
    action = WriteOff(reason=body.reason, by=actor or "api")
    return await _act(request, tenant, account_id, action, actor or "api")


@router.put(
    "/accounts/{account_id}/contacts",
    response_model=AccountOut,
    tags=["actions"],
    summary="Set the account's contact and escalation contact",
)
async def set_contacts(
    account_id: AccountId, body: ContactsIn, request: Request, tenant: Tenant, actor: Actor = None
) -> JSONResponse:
    """The escalation contact hears from the policy's escalation stage (cc by default)."""
    action = SetContacts(
        contact=body.contact.model_dump(mode="json", exclude_none=True) if body.contact else None,
        escalation_contact=(
            body.escalation_contact.model_dump(mode="json", exclude_none=True)
            if body.escalation_contact
            else None
        ),
        by=actor or "api",
    )
    return await _act(request, tenant, account_id, action, actor or "api")


# -- policies ---------------------------------------------------------------------------------


@router.get(
    "/policies",
    response_model=list[PolicyOut],
    tags=["policies"],
    summary="The newest policy of every segment",
)
async def list_policies(request: Request, tenant: Tenant) -> list[PolicyOut]:
    """Shipped segments and every segment the tenant published a policy for."""
    return [
        policy_view(p) for p in await commands.newest_policies(runtime_of(request).database, tenant)
    ]


@router.get(
    "/policies/{segment}",
    response_model=PolicyOut,
    tags=["policies"],
    summary="The newest version of a segment's policy",
)
async def get_policy(segment: SegmentName, request: Request, tenant: Tenant) -> PolicyOut:
    """Any segment has a policy: without a published one, standard's ladder (version 0)."""
    versions = await commands.policy_versions(runtime_of(request).database, tenant, segment)
    return policy_view(versions[0])


@router.get(
    "/policies/{segment}/versions",
    response_model=PolicyVersions,
    tags=["policies"],
    summary="Every version of a segment's policy, newest first",
)
async def policy_versions(segment: SegmentName, request: Request, tenant: Tenant) -> PolicyVersions:
    """Version 0 is the policy shipped with the service."""
    versions = await commands.policy_versions(runtime_of(request).database, tenant, segment)
    return PolicyVersions(segment=segment, versions=[policy_view(p) for p in versions])


@router.put(
    "/policies/{segment}",
    response_model=PolicyOut,
    tags=["policies"],
    summary="Publish a new version of a segment's policy",
)
async def put_policy(
    segment: SegmentName, body: PolicyIn, request: Request, tenant: Tenant, actor: Actor = None
) -> PolicyOut:
    """Accounts in dunning stay on the version they started with unless
    ``apply_to_running`` is true; accounts not in dunning take the new one at once. A
    policy that does not hold together is a 422 saying why."""
    runtime = runtime_of(request)
    data = body.model_dump(mode="json", exclude={"apply_to_running", "version", "segment"})
    try:
        policy = Policy.model_validate({**data, "segment": segment})
    except ValidationError as exc:
        raise _invalid_policy(exc) from exc
    published = await commands.publish_policy(
        runtime.database,
        tenant,
        policy,
        apply_to_running=body.apply_to_running,
        by=actor or "api",
        now=runtime.clock.now(),
    )
    return policy_view(published)


def _invalid_policy(exc: ValidationError) -> Problem:
    """The 422 for a policy that does not hold together: every error names its field
    under ``body``."""
    errors = validation_errors(exc.errors())
    for error in errors:
        error["field"] = f"body.{error['field']}".rstrip(".")
    return Problem(
        422,
        "The policy is not valid.",
        type_="validation-error",
        title="Invalid request",
        errors=errors,
    )


# -- reports ----------------------------------------------------------------------------------


@router.get(
    "/reports/aging",
    response_model=AgingReport,
    tags=["reports"],
    summary="Open balances by age: current, 1-30, 31-60, 61-90, 90+ days",
)
async def aging_report(
    request: Request,
    tenant: Tenant,
    as_of: Annotated[BoundedDay | None, Query(description="Default: today (UTC)")] = None,
    by_account: Annotated[bool, Query(description="Also each account's buckets")] = False,
) -> AgingReport:
    """Per currency, in total and by account, days past due counted on ``as_of``."""
    runtime = runtime_of(request)
    day = as_of or runtime.clock.now().date()
    tally = AgingTally(day, by_account=by_account)
    async for account in commands.accounts_of(runtime.database, tenant):
        tally.add(account)
    return tally.report()


@router.get(
    "/reports/dso",
    response_model=DsoReport,
    tags=["reports"],
    summary="Days sales outstanding over a period",
)
async def dso_report(
    request: Request,
    tenant: Tenant,
    period_from: Annotated[BoundedDay | None, Query(alias="from")] = None,
    period_to: Annotated[BoundedDay | None, Query(alias="to")] = None,
) -> DsoReport:
    """Receivables at the end / credit sales in the period x days; default: the last 90
    days up to today (UTC)."""
    runtime = runtime_of(request)
    end = period_to or runtime.clock.now().date()
    start = period_from or dso_period_start(end)
    if start > end:
        raise field_problem("from must not be after to.", "query.from", "must not be after to")
    tally = DsoTally(start, end)
    async for account in commands.accounts_of(runtime.database, tenant):
        tally.add(account)
    return tally.report()
