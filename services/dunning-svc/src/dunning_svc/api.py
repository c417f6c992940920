"""dunning-svc's HTTP routes: accounts, the worklist, timelines, manual actions,
policies and reports (DESIGN.md, dunning-svc).

Manual actions go through the same core as events (``commands.process``) under the
account lock; rule errors become problems in one place (``problem_of``). Every POST
is idempotent under an ``Idempotency-Key`` (the runtime's middleware).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events.common import BoundedDay, FreeText, Identifier
from dunning_events.money import to_minor
from dunning_runtime.app import Runtime, runtime_of
from dunning_runtime.auth import Tenant
from dunning_runtime.db import utc
from dunning_runtime.idempotency import in_transaction
from dunning_runtime.pagination import decode_cursor, encode_cursor
from dunning_runtime.problems import Problem, field_problem, rule_errors_route, validation_errors
from dunning_svc import storage
from dunning_svc.commands import PolicyBook, Work, process
from dunning_svc.core import (
    Account,
    AgreePlan,
    ApproveHandoff,
    DunningConflict,
    DunningRuleError,
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
    WorklistItem,
    WorklistPage,
    WriteOffIn,
)
from dunning_svc.policy import SHIPPED_SEGMENTS, Policy, load_policy_json, shipped_policy
from dunning_svc.storage import accounts, policies, timeline
from dunning_svc.views import AgingTally, DsoTally, account_view, dso_period_start

#: Parsed policy versions shared by every request of this process.
BOOK = PolicyBook()


def problem_of(error: DunningRuleError) -> Problem:
    """The one mapping of dunning rule errors to problems."""
    if isinstance(error, DunningConflict):
        return Problem(409, str(error), type_="dunning-conflict")
    field = f"body.{error.field}" if error.field else "body"
    return field_problem(str(error), field)


router = APIRouter(prefix="/v1", route_class=rule_errors_route(DunningRuleError, problem_of))

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


def _not_found(account_id: str) -> Problem:
    return Problem(404, f"There is no account {account_id!r}.", type_="account-not-found")


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

    async def work(session: AsyncSession) -> AccountOut:
        outcome = await process(
            session,
            runtime.outbox,
            BOOK,
            [Work(tenant, account_id, action, actor)],
            now,
            create=False,
        )
        account = outcome.accounts.get((tenant, account_id))
        if account is None:
            raise _not_found(account_id)
        return account_view(account, now)

    view = await in_transaction(runtime.database, work)
    return JSONResponse(view.model_dump(mode="json"), status_code=status)


async def _load(runtime: Runtime, tenant: str, account_id: str) -> Account:
    async with runtime.database.sessions() as session:
        account = await storage.load_account(session, tenant, account_id)
    if account is None:
        raise _not_found(account_id)
    return account


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
    return account_view(await _load(runtime, tenant, account_id), runtime.clock.now())


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
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> WorklistPage:
    """Accounts to work on, filtered and sorted; ``next_cursor`` continues the list."""
    runtime = runtime_of(request)
    query = select(accounts).where(accounts.c.tenant == tenant)
    if stage is not None:
        query = query.where(accounts.c.stage == stage)
    if segment is not None:
        query = query.where(accounts.c.segment == segment)
    if min_overdue is not None:
        query = query.where(accounts.c.overdue_e4 >= int(min_overdue * 10_000))
    if sort == "overdue":
        query = query.order_by(accounts.c.overdue_e4.desc(), accounts.c.seq)
    elif sort == "days_past_due":
        query = query.order_by(
            accounts.c.oldest_due_date.is_(None), accounts.c.oldest_due_date, accounts.c.seq
        )
    else:
        query = query.order_by(accounts.c.account_id)
    # A position in the sorted list: balances move, so a page may repeat or skip a line.
    offset = decode_cursor(cursor) if cursor else 0
    async with runtime.database.sessions() as session:
        rows = (await session.execute(query.offset(offset).limit(limit + 1))).all()
    now = runtime.clock.now()
    items = []
    for row in rows[:limit]:
        account = storage.to_account(row)
        view = account_view(account, now)
        items.append(
            WorklistItem(
                account_id=account.account_id,
                account_name=account.account_name,
                segment=account.segment,
                stage=account.stage,
                overdue_balance=view.overdue_balance,
                oldest_days_past_due=view.oldest_days_past_due,
                paused=account.paused,
                next_action_at=account.next_action_at,
            )
        )
    more = len(rows) > limit
    return WorklistPage(items=items, next_cursor=encode_cursor(offset + limit) if more else None)


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
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> TimelinePage:
    """Oldest first, with the reason and policy version of each decision."""
    runtime = runtime_of(request)
    await _load(runtime, tenant, account_id)
    query = select(timeline).where(timeline.c.tenant == tenant, timeline.c.account_id == account_id)
    if cursor:
        query = query.where(timeline.c.seq > decode_cursor(cursor))
    async with runtime.database.sessions() as session:
        rows = (await session.execute(query.order_by(timeline.c.seq).limit(limit + 1))).all()
    page = rows[:limit]
    return TimelinePage(
        items=[
            TimelineEntry(
                at=utc(r.at),
                kind=r.kind,
                summary=r.summary,
                actor=r.actor,
                policy_version=r.policy_version,
                data=json.loads(r.data) if r.data else None,
            )
            for r in page
        ],
        next_cursor=encode_cursor(page[-1].seq) if len(rows) > limit else None,
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


def _policy_out(
    segment: str,
    policy: Policy,
    *,
    apply: bool = False,
    by: str = "shipped",
    at: datetime | None = None,
) -> PolicyOut:
    return PolicyOut(
        segment=segment,
        version=policy.version,
        apply_to_running=apply,
        created_by=by,
        created_at=at,
        policy=policy.model_dump(mode="json", exclude={"version"}),
    )


async def _versions(runtime: Runtime, tenant: str, segment: str) -> list[PolicyOut]:
    async with runtime.database.sessions() as session:
        rows = (
            await session.execute(
                select(policies)
                .where(policies.c.tenant == tenant, policies.c.segment == segment)
                .order_by(policies.c.version.desc())
            )
        ).all()
    found = [
        _policy_out(
            segment,
            load_policy_json(r.body, version=r.version),
            apply=r.apply_to_running,
            by=r.created_by,
            at=utc(r.created_at),
        )
        for r in rows
    ]
    return [*found, _policy_out(segment, shipped_policy(segment))]


@router.get(
    "/policies",
    response_model=list[PolicyOut],
    tags=["policies"],
    summary="The newest policy of every segment",
)
async def list_policies(request: Request, tenant: Tenant) -> list[PolicyOut]:
    """Shipped segments and every segment the tenant published a policy for."""
    runtime = runtime_of(request)
    async with runtime.database.sessions() as session:
        stored = (
            (
                await session.execute(
                    select(policies.c.segment).where(policies.c.tenant == tenant).distinct()
                )
            )
            .scalars()
            .all()
        )
    out = []
    for segment in sorted({*SHIPPED_SEGMENTS, *stored}):
        out.append((await _versions(runtime, tenant, segment))[0])
    return out


@router.get(
    "/policies/{segment}",
    response_model=PolicyOut,
    tags=["policies"],
    summary="The newest version of a segment's policy",
)
async def get_policy(segment: SegmentName, request: Request, tenant: Tenant) -> PolicyOut:
    """Any segment has a policy: without a published one, standard's ladder (version 0)."""
    return (await _versions(runtime_of(request), tenant, segment))[0]


@router.get(
    "/policies/{segment}/versions",
    response_model=PolicyVersions,
    tags=["policies"],
    summary="Every version of a segment's policy, newest first",
)
async def policy_versions(segment: SegmentName, request: Request, tenant: Tenant) -> PolicyVersions:
    """Version 0 is the policy shipped with the service."""
    return PolicyVersions(
        segment=segment, versions=await _versions(runtime_of(request), tenant, segment)
    )


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
        errors = validation_errors(exc.errors())
        for error in errors:
            error["field"] = f"body.{error['field']}".rstrip(".")
        raise Problem(
            422,
            "The policy is not valid.",
            type_="validation-error",
            title="Invalid request",
            errors=errors,
        ) from exc
    now = runtime.clock.now()
    by = actor or "api"

    async def work(session: AsyncSession) -> PolicyOut:
        newest = (
            await session.execute(
                select(policies)
                .where(policies.c.tenant == tenant, policies.c.segment == segment)
                .order_by(policies.c.version.desc())
                .limit(1)
            )
        ).first()
        if newest is not None:
            same = load_policy_json(newest.body, version=newest.version)
            if same == policy.model_copy(update={"version": newest.version}) and (
                newest.apply_to_running == body.apply_to_running
            ):
                # The same policy again (a retried PUT): no new version.
                return _policy_out(
                    segment,
                    same,
                    apply=newest.apply_to_running,
                    by=newest.created_by,
                    at=utc(newest.created_at),
                )
        version = (newest.version if newest is not None else 0) + 1
        await session.execute(
            insert(policies).values(
                tenant=tenant,
                segment=segment,
                version=version,
                body=policy.model_copy(update={"version": version}).model_dump_json(),
                apply_to_running=body.apply_to_running,
                created_by=by,
                created_at=now,
            )
        )
        # Accounts on the newest version (not in dunning) and, when applied to running
        # ones, every account of the segment look again at their next timer sweep.
        moved = update(accounts).where(accounts.c.tenant == tenant, accounts.c.segment == segment)
        if body.apply_to_running:
            await session.execute(
                moved.where(accounts.c.policy_version.is_not(None)).values(
                    policy_version=version, next_action_at=now
                )
            )
        await session.execute(
            moved.where(
                accounts.c.policy_version.is_(None), accounts.c.written_off.is_(False)
            ).values(next_action_at=now)
        )
        return _policy_out(
            segment,
            policy.model_copy(update={"version": version}),
            apply=body.apply_to_running,
            by=by,
            at=now,
        )

    return await in_transaction(runtime.database, work)


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
    async for account in storage.each_account(runtime.database, tenant):
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
    async for account in storage.each_account(runtime.database, tenant):
        tally.add(account)
    return tally.report()
