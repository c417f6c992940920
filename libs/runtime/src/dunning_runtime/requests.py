"""Request guards every service's POST routes share: body size and Idempotency-Key.

DESIGN.md: every POST is idempotent. A POST with an ``Idempotency-Key``
header stores its response with the key; the same key with the same body
replays that response (200), the same key with another body is a 409.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Request
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.messaging_tables import idempotency_keys
from dunning_runtime.problems import Problem


def body_limit(max_bytes: int) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing bodies over ``max_bytes`` with a 413 problem."""

    async def check(request: Request) -> None:
        declared = request.headers.get("content-length", "")
        too_big = declared.isdigit() and int(declared) > max_bytes
        if not too_big:
            too_big = len(await request.body()) > max_bytes
        if too_big:
            raise Problem(
                413,
                f"The request body is larger than {max_bytes:,} bytes; split it.",
                type_="body-too-large",
            )

    return check


def request_hash(route: str, body: Any) -> str:
    """A fingerprint of a request: route plus canonical JSON body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    """A response remembered under an Idempotency-Key."""

    status_code: int
    body: Any


async def replay(
    session: AsyncSession, tenant: str, key: str, fingerprint: str
) -> StoredResponse | None:
    """The stored response for ``key``, None if new; 409 when the key was used for another body."""
    row = (
        (
            await session.execute(
                select(idempotency_keys).where(
                    idempotency_keys.c.tenant == tenant, idempotency_keys.c.key == key
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    if row["request_hash"] != fingerprint:
        raise Problem(
            409,
            "This Idempotency-Key was already used for a different request.",
            type_="idempotency-key-reused",
        )
    return StoredResponse(row["status_code"], row["response"])


async def remember(
    session: AsyncSession,
    tenant: str,
    key: str,
    fingerprint: str,
    status_code: int,
    body: Any,
    now: datetime,
) -> None:
    """Store a response under ``key`` in the caller's transaction."""
    await session.execute(
        insert(idempotency_keys).values(
            tenant=tenant,
            key=key,
            request_hash=fingerprint,
            status_code=status_code,
            response=body,
            created_at=now,
        )
    )
