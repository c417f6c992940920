"""Bearer API keys mapped to tenants, and the admin key (DESIGN.md, "Common to every service").

``RequestGuards`` (http_guards.py) already refused requests without a valid key
before their body was read; these dependencies resolve who is calling, and
refuse again so a route is never open should it be mounted without the guards.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dunning_runtime import logs
from dunning_runtime.http_guards import authorization_problem, bearer_key, unauthorized


def tenant_of(request: Request) -> str:
    """The caller's tenant, from ``Authorization: Bearer <key>``; 401 otherwise.

    The request's log lines carry it from here on (``logs.TENANT``).
    """
    settings = request.app.state.runtime.settings
    key = bearer_key(request.headers.get("authorization", ""))
    if key is None:
        raise unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    tenant: str | None = settings.tenant_for_key(key)
    if tenant is None:
        raise unauthorized("The API key is not valid.")
    logs.TENANT.set(tenant)
    return tenant


async def request_tenant(request: Request) -> str:
    """``tenant_of`` as a dependency run on the request's own task (FastAPI runs a plain
    function in a worker thread, where setting the log context would be lost)."""
    return tenant_of(request)


def admin_of(request: Request) -> None:
    """Allow only the admin key: 401 without a valid key, 403 for a tenant's key."""
    settings = request.app.state.runtime.settings
    problem = authorization_problem(
        settings, "/v1/admin/", request.headers.get("authorization", "")
    )
    if problem is not None:
        raise problem


Tenant = Annotated[str, Depends(request_tenant)]
#: Declare as a route parameter (``_admin: Admin``) to restrict a route to the admin key.
Admin = Annotated[None, Depends(admin_of)]
