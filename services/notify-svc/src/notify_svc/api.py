"""notify-svc's HTTP routes: notifications, tasks, templates, the profile, opt-outs.

Every POST is idempotent under an ``Idempotency-Key`` by the runtime's middleware;
rule errors from ``domain`` become problems in one place, the runtime's shared
``problem_of`` (the router's ``RuleErrorsAsProblems``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from dunning_events.common import Identifier
from dunning_runtime.app import runtime_of
from dunning_runtime.auth import Tenant
from dunning_runtime.pagination import Cursor, PageLimit, position_of
from dunning_runtime.problems import RuleErrorsAsProblems
from notify_svc.commands import contacts, notifications, profile, tasks, templates
from notify_svc.domain import NoticeFilter, TaskFilter
from notify_svc.models import (
    ChannelName,
    ContactIn,
    ContactOut,
    NotificationDetail,
    NotificationPage,
    NotificationStatus,
    ProfileIn,
    ProfileOut,
    TaskCompleteIn,
    TaskOut,
    TaskPage,
    TemplateIn,
    TemplateList,
    TemplateOut,
)
from notify_svc.views import (
    contact_view,
    notification_detail,
    notification_view,
    profile_view,
    task_view,
    template_view,
)

router = APIRouter(prefix="/v1", route_class=RuleErrorsAsProblems)

NotificationId = Annotated[Identifier, Path(description="The request's notification_id.")]
TaskId = Annotated[Identifier, Path(description="The task's id (its notification_id).")]
TemplateKey = Annotated[
    str,
    Path(
        max_length=60,
        pattern=r"^[a-z][a-z0-9_]{0,49}\.[a-z]{2,3}$",
        description="<template>.<language>, e.g. overdue_1.de, or layout.en for the layout.",
    ),
]
Address = Annotated[
    str,
    Path(
        min_length=1,
        max_length=320,
        pattern=r"^([^@\s/]+@[^@\s/]+\.[^@\s/]+|\+?[0-9 ()./-]{4,31})$",
        description="An email address or a phone number.",
    ),
]


# -- notifications -------------------------------------------------------------------


@router.get(
    "/notifications",
    response_model=NotificationPage,
    tags=["notifications"],
    summary="Notices, filtered, a page at a time",
)
async def list_notifications(
    request: Request,
    tenant: Tenant,
    account_id: Annotated[Identifier | None, Query(description="Only this account's")] = None,
    status: NotificationStatus | None = None,
    channel: ChannelName | None = None,
    cursor: Cursor = None,
    limit: PageLimit = 100,
) -> NotificationPage:
    """Notices in the order they were requested; ``next_cursor`` is null on the last page."""
    after = position_of(cursor)
    where = NoticeFilter(account_id=account_id, status=status, channel=channel)
    async with runtime_of(request).database.sessions() as session:
        page = await notifications.list_notifications(session, tenant, where, after, limit)
    return NotificationPage(
        items=[notification_view(r) for r in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/notifications/{notification_id}",
    response_model=NotificationDetail,
    tags=["notifications"],
    summary="One notice with what it says",
)
async def get_notification(
    notification_id: NotificationId, request: Request, tenant: Tenant
) -> NotificationDetail:
    """The notice, its status and why, and its rendered subject and bodies."""
    async with runtime_of(request).database.sessions() as session:
        row = await notifications.get_notification(session, tenant, notification_id)
    return notification_detail(row)


# -- tasks -----------------------------------------------------------------------------


@router.get("/tasks", response_model=TaskPage, tags=["tasks"], summary="Collectors' call tasks")
async def list_tasks(
    request: Request,
    tenant: Tenant,
    status: Annotated[str | None, Query(pattern=r"^(open|completed)$")] = None,
    account_id: Annotated[Identifier | None, Query(description="Only this account's")] = None,
    cursor: Cursor = None,
    limit: PageLimit = 100,
) -> TaskPage:
    """Tasks, oldest first: ``status=open`` is a collector's worklist."""
    after = position_of(cursor)
    where = TaskFilter(status=status, account_id=account_id)
    async with runtime_of(request).database.sessions() as session:
        page = await tasks.list_tasks(session, tenant, where, after, limit)
    return TaskPage(items=[task_view(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/tasks/{task_id}", response_model=TaskOut, tags=["tasks"], summary="One task")
async def get_task(task_id: TaskId, request: Request, tenant: Tenant) -> TaskOut:
    """The task, open or completed."""
    async with runtime_of(request).database.sessions() as session:
        return task_view(await tasks.load_task(session, tenant, task_id))


@router.post(
    "/tasks/{task_id}/complete",
    response_model=TaskOut,
    tags=["tasks"],
    summary="Complete a call task with its outcome",
    responses={409: {"description": "Already completed with another outcome"}},
)
async def complete_task(
    task_id: TaskId, body: TaskCompleteIn, request: Request, tenant: Tenant
) -> TaskOut:
    """Record what came of the call and publish ``CollectorTaskCompleted`` (a ``promised``
    outcome becomes a promise to pay at dunning-svc). The same completion again is a
    no-op; another one is a 409."""
    runtime = runtime_of(request)
    async with runtime.database.transaction() as session:
        task = await tasks.complete_task(
            session, runtime.outbox, tenant, task_id, body.completion(), runtime.clock.now()
        )
    return task_view(task)


# -- templates -------------------------------------------------------------------------


@router.get(
    "/templates", response_model=TemplateList, tags=["templates"], summary="Every template key"
)
async def list_templates(request: Request, tenant: Tenant) -> TemplateList:
    """The shipped templates (per language) and the parts this tenant overrides."""
    async with runtime_of(request).database.sessions() as session:
        return TemplateList(items=await templates.list_templates(session, tenant))


@router.get(
    "/templates/{key}",
    response_model=TemplateOut,
    tags=["templates"],
    summary="A template as it renders for the tenant",
)
async def get_template(key: TemplateKey, request: Request, tenant: Tenant) -> TemplateOut:
    """Its parts (the tenant's overrides, else shipped) and a preview with a sample notice."""
    async with runtime_of(request).database.sessions() as session:
        return template_view(await templates.get_template(session, tenant, key))


@router.put(
    "/templates/{key}",
    response_model=TemplateOut,
    tags=["templates"],
    summary="Override a template for the tenant",
    responses={422: {"description": "A part does not render: errors name it and say where"}},
)
async def put_template(
    key: TemplateKey, body: TemplateIn, request: Request, tenant: Tenant
) -> TemplateOut:
    """Override some parts of a template; it must render with a sample notice first (in
    Jinja2's sandbox: no attribute access to internals)."""
    runtime = runtime_of(request)
    async with runtime.database.transaction() as session:
        shown = await templates.put_template(
            session, tenant, key, body.parts(), runtime.clock.now()
        )
    return template_view(shown)


@router.delete(
    "/templates/{key}",
    status_code=204,
    tags=["templates"],
    summary="Drop the tenant's override: the shipped template applies",
)
async def delete_template(key: TemplateKey, request: Request, tenant: Tenant) -> Response:
    """Deleting an override that does not exist is a no-op."""
    async with runtime_of(request).database.transaction() as session:
        await templates.delete_template(session, tenant, key)
    return Response(status_code=204)


# -- the profile -----------------------------------------------------------------------


@router.get("/profile", response_model=ProfileOut, tags=["profile"], summary="Sender profile")
async def get_profile(request: Request, tenant: Tenant) -> ProfileOut:
    """Company name, contact, payment instructions, payment link and webhook endpoint."""
    async with runtime_of(request).database.sessions() as session:
        return profile_view(await profile.get_profile(session, tenant))


@router.put("/profile", response_model=ProfileOut, tags=["profile"], summary="Set the profile")
async def put_profile(body: ProfileIn, request: Request, tenant: Tenant) -> ProfileOut:
    """Replace the profile; notices recorded from now on use it."""
    runtime = runtime_of(request)
    async with runtime.database.transaction() as session:
        stored = await profile.put_profile(
            session, tenant, body.model_dump(mode="json"), runtime.clock.now()
        )
    return profile_view(stored)


# -- contacts --------------------------------------------------------------------------


@router.get("/contacts/{address}", response_model=ContactOut, tags=["contacts"], summary="Opt-outs")
async def get_contact(address: Address, request: Request, tenant: Tenant) -> ContactOut:
    """The channels the address opted out of (none is an empty list)."""
    async with runtime_of(request).database.sessions() as session:
        return contact_view(await contacts.get_contact(session, tenant, address))


@router.post(
    "/contacts/{address}/opt-out",
    response_model=ContactOut,
    tags=["contacts"],
    summary="Stop notices to an address",
)
async def opt_out(
    address: Address, request: Request, tenant: Tenant, body: ContactIn | None = None
) -> ContactOut:
    """From now on, notices to the address on these channels are suppressed (reason
    ``opted_out``). Opting out again changes nothing."""
    runtime = runtime_of(request)
    async with runtime.database.transaction() as session:
        contact = await contacts.opt_out(
            session,
            tenant,
            address,
            body.channels if body else None,
            body.reason if body else "",
            runtime.clock.now(),
        )
    return contact_view(contact)


@router.post(
    "/contacts/{address}/opt-in",
    response_model=ContactOut,
    tags=["contacts"],
    summary="Allow notices to an address again",
)
async def opt_in(
    address: Address, request: Request, tenant: Tenant, body: ContactIn | None = None
) -> ContactOut:
    """Withdraw the opt-out on these channels (all when none are given)."""
    async with runtime_of(request).database.transaction() as session:
        contact = await contacts.opt_in(session, tenant, address, body.channels if body else None)
    return contact_view(contact)
