"""Bearer API keys mapped to tenants, and admin keys (DESIGN.md, "Common to every service").

Keys are checked by the app's ``KeyRing`` (``app.state.keys``, ``dunning_runtime.api_keys``):
the bootstrap keys of the settings and the managed keys.

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
    key = bearer_key(request.headers.get("authorization", ""))
    if key is None:
        raise unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    tenant: str | None = request.app.state.keys.tenant_for(key)
    if tenant is None:
        raise unauthorized("The API key is not valid.")
    logs.TENANT.set(tenant)
    return tenant


async def request_tenant(request: Request) -> str:
    """``tenant_of`` as a dependency run on the request's own task (FastAPI runs a plain
    function in a worker thread, where setting the log context would be lost)."""
    return tenant_of(request)


def admin_of(request: Request) -> None:
    """Allow only an admin key: 401 without a valid key, 403 for a tenant's key."""
    problem = authorization_problem(
        request.app.state.keys, "/v1/admin/", request.headers.get("authorization", "")
    )
    if problem is not None:
        raise problem


Tenant = Annotated[str, Depends(request_tenant)]
#: Declare as a route parameter (``_admin: Admin``) to restrict a route to the admin key.
Admin = Annotated[None, Depends(admin_of)]
