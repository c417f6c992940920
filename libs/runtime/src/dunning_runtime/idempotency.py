"""Every POST is idempotent (DESIGN.md): Idempotency-Key replay for every route, by default.

``IdempotencyMiddleware`` wraps the whole app, so a service's POST routes get it
without declaring anything. A POST with an ``Idempotency-Key`` header is
remembered per tenant under that key:

- the first request claims the key, runs, and its 2xx response is stored;
- the same key with the same request (method, path, query, JSON body) replays
  that response with status 200 and ``Idempotent-Replayed: true``;
- the same key with another request is a 409 ``idempotency-key-reused``;
- the same key while the first request still runs is a 409
  ``idempotency-key-in-use`` with ``Retry-After``;
- a request that ends in an error stores nothing, so a retry runs again;
- a claim left by a process that died in the middle of the request (SIGKILL, OOM)
  is free at once: each claim names the instance that holds it, and the key is
  "in use" only while that instance is alive (``dunning_runtime.liveness``).

Keys are kept ``DUNNING_IDEMPOTENCY_RETENTION_HOURS`` (``purge``), counted in wall-clock
time, not by a service's manual clock.

``in_transaction`` is the other half of idempotency under concurrency: a unique-key
race with an identical request is retried once, when the winner is visible.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dunning_runtime.auth import tenant_of
from dunning_runtime.db import Database
from dunning_runtime.http_guards import is_admin_path
from dunning_runtime.liveness import Liveness
from dunning_runtime.messaging_tables import idempotency_keys
from dunning_runtime.problems import PROBLEM_JSON, Problem

log = logging.getLogger(__name__)

T = TypeVar("T")

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200
#: A claim without an owner (made before owners were recorded) older than this belongs
#: to a request that died: the next request with its key takes it over.
CLAIM_TIMEOUT = timedelta(seconds=60)
#: While a live request holds the key: the claim is checked again at every retry.
IN_USE_RETRY_AFTER_S = 1
_IN_PROGRESS = 0  # status_code of a claimed key whose request has not finished


async def in_transaction(database: Database, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in a transaction; a unique-key race with a concurrent identical
    request is retried once, when the winner's row is visible and the request becomes
    a replay or a conflict."""
    try:
        async with database.transaction() as session:
            return await work(session)
    except IntegrityError:
        async with database.transaction() as session:
            return await work(session)


def changed_fields(accepted: object, candidate: object, path: str = "") -> list[str]:
    """Paths where two JSON-like request bodies differ (``contact.name``,
    ``lines[0].amount``): a resource posted again under its own id with other content
    is a 409 that names them."""
    if isinstance(accepted, dict) and isinstance(candidate, dict):
        fields: list[str] = []
        for key in sorted(set(accepted) | set(candidate), key=str):
            sub = f"{path}.{key}" if path else str(key)
            fields += changed_fields(accepted.get(key), candidate.get(key), sub)
        return fields
    if (
        isinstance(accepted, list)
        and isinstance(candidate, list)
        and len(accepted) == len(candidate)
    ):
        fields = []
        for index, (a, c) in enumerate(zip(accepted, candidate, strict=True)):
            fields += changed_fields(a, c, f"{path}[{index}]")
        return fields
    return [] if accepted == candidate else [path or "body"]


def conflict_problem(kind: str, resource_id: str, fields: list[str]) -> Problem:
    """The 409 for ``kind`` ``resource_id`` (``invoice``, ``INV-1``) posted again with
    other content: the detail and ``errors`` name every field that differs."""
    return Problem(
        409,
        f"{kind.capitalize()} {resource_id!r} was already accepted with other content: "
        f"{', '.join(fields)}.",
        type_=f"{kind}-conflict",
        errors=[
            {"field": f"body.{f}", "message": f"differs from the {kind} already accepted"}
            for f in fields
        ],
    )


def request_hash(method: str, path: str, query: str, body: bytes) -> str:
    """A fingerprint of a request; JSON bodies count by content, not key order or spacing."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    digest = hashlib.sha256(f"{method} {path}?{query}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    """A response remembered under an Idempotency-Key."""

    status_code: int
    body: Any


async def claim(
    session: AsyncSession,
    tenant: str,
    key: str,
    fingerprint: str,
    now: datetime,
    liveness: Liveness,
) -> StoredResponse | None:
    """Claim ``key`` for a request (None), or the response stored for it earlier.

    A 409 problem if the key belongs to another request, or its request still runs in
    a live instance; a claim whose instance is gone is taken over.
    """
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
        await session.execute(
            insert(idempotency_keys).values(
                tenant=tenant,
                key=key,
                request_hash=fingerprint,
                status_code=_IN_PROGRESS,
                response={},
                created_at=now,
                owner=liveness.instance_id,
            )
        )
        return None
    if row["request_hash"] != fingerprint:
        raise Problem(
            409,
            f"This {HEADER} was already used for a different request; use a new key.",
            type_="idempotency-key-reused",
        )
    if row["status_code"] != _IN_PROGRESS:
        return StoredResponse(row["status_code"], row["response"])
    if await _still_running(row, now, liveness):
        raise Problem(
            409,
            f"A request with this {HEADER} is still being processed; retry shortly.",
            type_="idempotency-key-in-use",
            headers={"Retry-After": str(IN_USE_RETRY_AFTER_S)},
        )
    taken = await session.execute(
        update(idempotency_keys)
        .where(
            idempotency_keys.c.tenant == tenant,
            idempotency_keys.c.key == key,
            idempotency_keys.c.status_code == _IN_PROGRESS,
            idempotency_keys.c.created_at == row["created_at"],
        )
        .values(created_at=now, owner=liveness.instance_id)
    )
    if not taken.rowcount:  # type: ignore[attr-defined]
        # Another retry took it over (or it finished) between our read and write.
        raise Problem(
            409,
            f"A request with this {HEADER} is still being processed; retry shortly.",
            type_="idempotency-key-in-use",
            headers={"Retry-After": str(IN_USE_RETRY_AFTER_S)},
        )
    return None


async def _still_running(row: Any, now: datetime, liveness: Liveness) -> bool:
    """Whether the request holding an unfinished claim may still be running."""
    owner = row["owner"]
    if owner is not None:
        return await liveness.alive(owner)
    created = row["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return bool(now - created < CLAIM_TIMEOUT)


async def remember(
    session: AsyncSession, tenant: str, key: str, status_code: int, body: Any
) -> None:
    """Store the response of the request that claimed ``key``."""
    await session.execute(
        update(idempotency_keys)
        .where(idempotency_keys.c.tenant == tenant, idempotency_keys.c.key == key)
        .values(status_code=status_code, response=body)
    )


async def release(session: AsyncSession, tenant: str, key: str) -> None:
    """Give up the claim on ``key`` (its request failed), so a retry runs again."""
    await session.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.tenant == tenant,
            idempotency_keys.c.key == key,
            idempotency_keys.c.status_code == _IN_PROGRESS,
        )
    )


async def purge(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` keys created before ``before`` (wall clock), oldest first;
    returns how many. Reads through the index on ``created_at``."""
    oldest = (
        select(idempotency_keys.c.tenant, idempotency_keys.c.key)
        .where(idempotency_keys.c.created_at < before)
        .order_by(idempotency_keys.c.created_at)
        .limit(limit)
    )
    result = await session.execute(
        delete(idempotency_keys).where(
            tuple_(idempotency_keys.c.tenant, idempotency_keys.c.key).in_(oldest)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


class IdempotencyMiddleware:
    """ASGI middleware giving every POST route Idempotency-Key replay (module docstring).

    It must sit inside the body-size limit, which bounds what it buffers. Requests
    without the header, without a valid tenant key (the route answers 401) or
    outside a running service pass straight through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Admin routes are not replayed: their answers may hold a new API key, which must
        # never be stored.
        if scope["type"] != "http" or scope["method"] != "POST" or is_admin_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        key = Headers(scope=scope).get(HEADER)
        runtime = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
        if key is None or runtime is None:
            await self.app(scope, receive, send)
            return
        try:
            tenant = tenant_of(Request(scope))
        except Problem:
            await self.app(scope, receive, send)  # the route answers 401
            return
        if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            await _send_problem(send, _bad_key())
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        await self._handle(
            scope, receive, send, runtime.database, runtime.liveness, tenant, key, body
        )

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        database: Database,
        liveness: Liveness,
        tenant: str,
        key: str,
        body: bytes,
    ) -> None:
        fingerprint = request_hash(
            scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"), body
        )
        now = datetime.now(UTC)
        try:

            async def take(session: AsyncSession) -> StoredResponse | None:
                return await claim(session, tenant, key, fingerprint, now, liveness)

            stored = await in_transaction(database, take)
        except Problem as problem:
            await _send_problem(send, problem)
            return
        if stored is not None:
            await _send_json(send, 200, stored.body, replayed=True)
            return

        delivered = False

        async def replay_body() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: Message | None = None
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            await _release_quietly(database, tenant, key)
            raise
        assert start is not None
        content = b"".join(parts)
        status = int(start["status"])
        response_type = Headers(raw=start.get("headers", [])).get("content-type", "")
        try:
            async with database.transaction() as session:
                if 200 <= status < 300 and response_type.startswith("application/json"):
                    await remember(session, tenant, key, status, json.loads(content or b"null"))
                else:
                    await release(session, tenant, key)
        except Exception:
            # The database went away as the request ended (its 503 often says so): the
            # claim must not stay "in use" for as long as this live process runs.
            log.warning("could not settle Idempotency-Key claim; releasing it later", exc_info=True)
            _release_later(database, tenant, key)
        await send(start)
        await send({"type": "http.response.body", "body": content, "more_body": False})


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _release_quietly(database: Database, tenant: str, key: str) -> None:
    try:
        async with database.transaction() as session:
            await release(session, tenant, key)
    except Exception:
        # The original error matters more; the claim is released once the database is back.
        log.warning("could not release Idempotency-Key claim; releasing it later", exc_info=True)
        _release_later(database, tenant, key)


#: Background releases under way (a reference keeps each task alive until it ends).
_RELEASES: set[asyncio.Task[None]] = set()
#: How long a claim is retried for release while the database stays away.
RELEASE_RETRY_S = 600.0


def _release_later(database: Database, tenant: str, key: str) -> None:
    """Release ``key``'s claim in the background, retrying with backoff: a claim whose
    owner is alive is "in use", so without this a request that failed while the
    database was away kept its key from every retry until the process ended."""

    async def retry() -> None:
        delay = 0.2
        deadline = time.monotonic() + RELEASE_RETRY_S
        while True:
            try:
                async with database.transaction() as session:
                    await release(session, tenant, key)
                return
            except Exception:
                if time.monotonic() > deadline:
                    log.warning("gave up releasing an Idempotency-Key claim", exc_info=True)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    task = asyncio.get_running_loop().create_task(retry())
    _RELEASES.add(task)
    task.add_done_callback(_RELEASES.discard)


def _bad_key() -> Problem:
    return Problem(
        422,
        f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters.",
        type_="validation-error",
        title="Invalid request",
        errors=[
            {
                "field": f"header.{HEADER}",
                "message": f"must be 1-{MAX_KEY_LENGTH} printable ASCII characters",
                "type": "value_error",
            }
        ],
    )


async def _send_problem(send: Send, problem: Problem) -> None:
    await _send_raw(send, problem.status, problem.body(), PROBLEM_JSON, problem.headers or {})


async def _send_json(send: Send, status: int, body: Any, *, replayed: bool) -> None:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    await _send_raw(send, status, body, "application/json", headers)


async def _send_raw(
    send: Send, status: int, body: Any, media_type: str, headers: dict[str, str]
) -> None:
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    raw = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(content)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content, "more_body": False})
