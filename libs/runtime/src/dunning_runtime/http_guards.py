"""ASGI middleware guarding every request before FastAPI reads or parses anything.

In this order, for each HTTP request:

1. ``/v1`` routes need a Bearer key: a tenant key, or for ``/v1/admin/*`` an
   admin key (a tenant key there is a 403); bootstrap keys of the settings or managed
   ones (``dunning_runtime.api_keys.KeyRing``). A request without a valid key is a
   401 problem before a single body byte is read. The route's dependency still
   resolves the tenant; this check only keeps unauthenticated bodies out.
2. A tenant key may make ``DUNNING_RATE_LIMIT_PER_S`` requests per second on
   average (``DUNNING_RATE_LIMIT_BURST`` at once) to this instance; past that a
   429 problem with ``Retry-After`` (``dunning_runtime.rate_limit``). Admin routes
   and signed webhooks are not limited.
3. The body may not exceed the route's limit (``ServiceSpec.body_limits``,
   else ``DEFAULT_BODY_LIMIT``): a larger ``Content-Length`` is a 413 at once,
   and a body streamed without one is cut off with a 413 as soon as it passes
   the limit.
4. A database or broker that is away (``errors.is_transient``: a restart, a
   refused connection, a failover) is a temporary condition: a problem+json 503
   with ``Retry-After``, logged as a warning without a traceback. Any other
   unexpected exception is a problem+json 500 carrying an ``error_id`` that the
   log line (with its traceback) carries too.

Every response gets ``X-Content-Type-Options: nosniff``; ``/v1`` responses
(which carry tenant data such as contact emails) get ``Cache-Control: no-store``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dunning_runtime.errors import is_transient
from dunning_runtime.problems import PROBLEM_JSON, Problem
from dunning_runtime.rate_limit import KeyRateLimiter
from dunning_runtime.settings import ServiceSettings

if TYPE_CHECKING:
    from dunning_runtime.api_keys import KeyRing

log = logging.getLogger(__name__)

#: Body limit of every route not named in ``ServiceSpec.body_limits``.
DEFAULT_BODY_LIMIT = 256 * 1024

ADMIN_PREFIX = "/v1/admin"

#: Seconds a client should wait before retrying when a backend is away: a database
#: restart or failover takes a few seconds, and the request is safe to repeat (every POST
#: is idempotent).
UNAVAILABLE_RETRY_AFTER_S = 2
_TEMPLATE_PARAMETER = re.compile(r"\{[^/{}]+\}")


def unauthorized(detail: str) -> Problem:
    """A 401 asking for a Bearer key."""
    return Problem(401, detail, type_="unauthorized", headers={"WWW-Authenticate": "Bearer"})


def bearer_key(authorization: str) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value, None if there is none."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return None
    return key


def authorization_problem(keys: KeyRing, path: str, authorization: str) -> Problem | None:
    """Why a request for ``path`` with this Authorization value is refused, None if allowed."""
    if not is_api_path(path):
        return None
    key = bearer_key(authorization)
    if key is None:
        return unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    if is_admin_path(path):
        if keys.is_admin(key):
            return None
        if keys.tenant_for(key) is not None:
            return Problem(
                403,
                "Admin routes need an admin key, not a tenant's key.",
                type_="forbidden",
            )
        return unauthorized("The admin key is not valid.")
    if keys.tenant_for(key) is None:
        return unauthorized("The API key is not valid.")
    return None


def is_api_path(path: str) -> bool:
    """True for the versioned API (``/v1`` and below), which needs a key."""
    return path == "/v1" or path.startswith("/v1/")


def is_admin_path(path: str) -> bool:
    """True for the admin routes, which need the admin key."""
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


class BodyLimits:
    """Maximum body size per route path; exact paths or templates like ``/v1/x/{id}/void``."""

    def __init__(self, limits: Mapping[str, int], default: int = DEFAULT_BODY_LIMIT) -> None:
        self.default = default
        self._exact: dict[str, int] = {}
        self._templates: list[tuple[re.Pattern[str], int]] = []
        for path, limit in limits.items():
            if limit < 0:
                raise ValueError(f"body limit of {path} must not be negative")
            if "{" in path:
                self._templates.append((self._compile(path), limit))
            else:
                self._exact[path] = limit

    @staticmethod
    def _compile(template: str) -> re.Pattern[str]:
        pieces: list[str] = []
        position = 0
        for match in _TEMPLATE_PARAMETER.finditer(template):
            pieces.append(re.escape(template[position : match.start()]))
            pieces.append("[^/]+")
            position = match.end()
        pieces.append(re.escape(template[position:]))
        return re.compile("".join(pieces))

    def for_path(self, path: str) -> int:
        """The limit of ``path``: its exact entry, else the first matching template, else the
        default."""
        if path in self._exact:
            return self._exact[path]
        for pattern, limit in self._templates:
            if pattern.fullmatch(path):
                return limit
        return self.default


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        f"The request body is larger than {limit:,} bytes; split it.",
        type_="body-too-large",
        errors=[{"field": "body", "message": f"larger than {limit:,} bytes", "type": "too_large"}],
    )


class RequestGuards:
    """The ASGI middleware described in the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: ServiceSettings,
        keys: KeyRing,
        body_limits: Mapping[str, int] | None = None,
        service: str = "",
        signed_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.settings = settings
        self.keys = keys
        self.signed_prefixes = signed_prefixes
        self.limits = BodyLimits(body_limits or {})
        self.service = service or settings.service_name
        self.rate_limiter = KeyRateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Guard one HTTP request; other scopes (lifespan) pass through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = _headers(scope)
        extra_headers = [(b"x-content-type-options", b"nosniff")]
        if is_api_path(path):
            extra_headers.append((b"cache-control", b"no-store"))

        limit = self.limits.for_path(path)
        problem = self._refusal(path, headers, limit)
        if problem is not None:
            await _send_problem(send, problem, path, extra_headers)
            return

        started = False
        answered = False
        received = 0

        async def guarded_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request" and not answered:
                received += len(message.get("body", b""))
                if received > limit:
                    if not started:
                        await _send_problem(send, _too_large(limit), path, extra_headers)
                    answered = True
                    # The app sees a client that went away and stops reading.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # we already answered (413); whatever the app says next is moot
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": _merged(message.get("headers", []), extra_headers)}
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception as exc:
            if answered:
                return  # the app failed on the cut-off body; the 413 is already sent
            problem = self._failure(exc, scope.get("method", ""), path)
            if started:
                raise  # too late for a problem response; the server closes the connection
            await _send_problem(send, problem, path, extra_headers)

    def _refusal(self, path: str, headers: Mapping[str, str], limit: int) -> Problem | None:
        """The answer for a request refused before the app sees it (401, 403, 429, 413)."""
        authorization = headers.get("authorization", "")
        problem = (
            None if self._signed(path) else authorization_problem(self.keys, path, authorization)
        )
        if problem is None and self.rate_limiter.enabled:
            problem = self._over_rate(path, authorization)
        declared = headers.get("content-length", "")
        if problem is None and declared.isdigit() and int(declared) > limit:
            problem = _too_large(limit)
        return problem

    def _failure(self, exc: Exception, method: str, path: str) -> Problem:
        """Log an exception the app let escape and the problem it answers: a 503 when a
        backend is away (the client retries), else a 500 with an id to quote."""
        if is_transient(exc):
            log.warning(
                "%s: %s %s answered 503, a backend is away (%s: %s)",
                self.service,
                method,
                path,
                type(exc).__name__,
                exc,
            )
            return _unavailable()
        error_id = uuid.uuid4().hex
        log.error(
            "%s: unexpected error %s on %s %s", self.service, error_id, method, path, exc_info=exc
        )
        return Problem(
            500,
            "An unexpected error occurred; quote the error_id when reporting it.",
            type_="internal-error",
            error_id=error_id,
        )

    def _over_rate(self, path: str, authorization: str) -> Problem | None:
        """The 429 for a tenant key past its rate, None if the request may go on."""
        if not is_api_path(path) or is_admin_path(path) or self._signed(path):
            return None
        key = bearer_key(authorization)
        if key is None:
            return None
        wait_s = self.rate_limiter.admit(key)
        if not wait_s:
            return None
        retry = KeyRateLimiter.retry_after(wait_s)
        return Problem(
            429,
            f"This API key made more than {self.settings.rate_limit_per_s:g} requests per "
            f"second to this service; retry after {retry} s.",
            type_="rate-limited",
            headers={"Retry-After": str(retry)},
        )

    def _signed(self, path: str) -> bool:
        """Whether ``path`` authenticates itself (``ServiceSpec.signed_prefixes``)."""
        return any(path.startswith(prefix) for prefix in self.signed_prefixes)


def _unavailable() -> Problem:
    return Problem(
        503,
        "The service's database or event bus is unreachable for the moment. Retry the "
        "request after Retry-After seconds: every POST is idempotent, so a retry with the "
        "same id or Idempotency-Key never applies it twice.",
        type_="service-unavailable",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
    )


def _headers(scope: Scope) -> dict[str, str]:
    # Last one wins, as for any other duplicated header the guards read.
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _merged(
    headers: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    present = {k.lower() for k, _ in headers}
    return [*headers, *((k, v) for k, v in extra if k not in present)]


async def _send_problem(
    send: Send, problem: Problem, path: str, extra_headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(problem.body(path)).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *(
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in (problem.headers or {}).items()
        ),
        *extra_headers,
    ]
    if problem.status == 413:
        # The rest of the body is not read: tell the client this connection is done.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
