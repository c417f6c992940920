"""Bearer API keys mapped to tenants (DESIGN.md, "Common to every service")."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from dunning_runtime.problems import Problem


def tenant_of(request: Request) -> str:
    """The caller's tenant, from ``Authorization: Bearer <key>``; 401 otherwise."""
    runtime = request.app.state.runtime
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(
            401,
            "Send an API key as 'Authorization: Bearer <key>'.",
            type_="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = key.strip()
    # Compare against every key in constant time so timing does not leak which exist.
    tenant: str | None = None
    for known, owner in runtime.settings.api_keys.items():
        if hmac.compare_digest(known.encode(), key.encode()):
            tenant = owner
    if tenant is None:
        raise Problem(
            401,
            "The API key is not valid.",
            type_="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


Tenant = Annotated[str, Depends(tenant_of)]
