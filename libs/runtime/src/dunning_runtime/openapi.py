"""A service's OpenAPI document, made to say what the service really does.

FastAPI documents what route functions declare. What the shared shell adds around
them is invisible to it: the bearer key every ``/v1`` route checks (401), the admin key
of ``/v1/admin`` (403), problem+json errors instead of FastAPI's ``HTTPValidationError``,
404 for unknown resources, 409 conflicts, 413 body limits, 400 for bodies that cannot be
read. A client generator or a fuzzer trusts the document, so ``install_openapi``
rewrites it once, from rules that follow the HTTP contract in DESIGN.md, and answers a
method a path does not support with a 405 whose ``Allow`` lists every method of that
path (Starlette names only the methods of the first route it matched).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from dunning_runtime.http_guards import BodyLimits
from dunning_runtime.problems import PROBLEM_JSON, TYPE_BASE, Problem, problem_response

__all__ = [
    "ADMIN_SCHEME",
    "PROBLEM_SCHEMA",
    "SIGNATURE_SCHEME",
    "TENANT_SCHEME",
    "AllowedMethods",
    "PathMethods",
    "document",
    "install_openapi",
    "methods_at",
    "methods_table",
    "path_pattern",
]

#: Names of the bearer security schemes in ``components.securitySchemes``.
TENANT_SCHEME = "tenantKey"
ADMIN_SCHEME = "adminKey"
#: Name of the scheme of signed webhooks (``ServiceSpec.signed_prefixes``): a route that
#: authenticates its caller by signature declares ``openapi_extra={"security":
#: [{SIGNATURE_SCHEME: []}]}`` and keeps it; every other /v1 route gets a bearer scheme.
SIGNATURE_SCHEME = "webhookSignature"
#: Name of the shared error schema in ``components.schemas``.
PROBLEM_SCHEMA = "ProblemDetails"

_API_PREFIX = "/v1/"
_ADMIN_PREFIX = "/v1/admin/"
_WRITES = frozenset({"post", "put", "patch", "delete"})
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# FastAPI's own error schemas, unused once 422 is documented as a problem.
_FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")
# A path template's parameter, "{invoice_id}" or "{rest:path}".
_PARAMETER = re.compile(r"\{[^/{}:]+(:[^/{}]+)?\}")

_PROBLEM_REF = {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}

_SCHEMAS: dict[str, Any] = {
    PROBLEM_SCHEMA: {
        "title": "ProblemDetails",
        "description": (
            "RFC 9457 problem details, sent as application/problem+json for every error. "
            "Validation problems list each invalid field in `errors`."
        ),
        "type": "object",
        "properties": {
            "type": {
                "type": "string",
                "format": "uri",
                "description": "Identifies the kind of problem, e.g. "
                "https://dunning.dev/problems/validation-error.",
            },
            "title": {"type": "string", "description": "Short summary of the kind of problem."},
            "status": {
                "type": "integer",
                "minimum": 400,
                "maximum": 599,
                "description": "The HTTP status code.",
            },
            "detail": {"type": "string", "description": "What went wrong with this request."},
            "instance": {"type": "string", "description": "The path of the request."},
            "errors": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/ProblemFieldError"},
                "description": "One entry per invalid field.",
            },
            "error_id": {
                "type": "string",
                "description": "500 only: the id the service logged the error under.",
            },
        },
        "required": ["type", "title", "status", "detail"],
        # Problems may carry extension members (RFC 9457 section 3.2).
        "additionalProperties": True,
    },
    "ProblemFieldError": {
        "title": "ProblemFieldError",
        "description": "One invalid field of a request.",
        "type": "object",
        "properties": {
            "field": {
                "type": "string",
                "description": "Where: body.lines[0].amount, query.cursor, header.Idempotency-Key.",
            },
            "message": {"type": "string", "description": "The rule it breaks."},
            "type": {"type": "string", "description": "Machine-readable kind of error."},
        },
        "required": ["field", "message"],
    },
}

_SECURITY_SCHEMES: dict[str, Any] = {
    TENANT_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "A tenant's API key (setting DUNNING_API_KEYS): `Authorization: Bearer <key>`. "
            "Every resource is scoped to the key's tenant."
        ),
    },
    SIGNATURE_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "Dunning-Signature",
        "description": (
            'A processor\'s signature, `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, '
            "under a secret shared per tenant and provider; no Bearer key."
        ),
    },
    ADMIN_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "The operator's key (setting DUNNING_ADMIN_KEY) for routes that act on every "
            "tenant, such as the manual clock; a tenant's key is refused with 403."
        ),
    },
}

# Headers the shell's request guards put on responses (http_guards.py).
_HEADERS: dict[str, Any] = {
    "X-Content-Type-Options": {
        "description": "Always nosniff: clients must not guess another media type.",
        "required": True,
        "schema": {"type": "string", "const": "nosniff"},
    },
    "Cache-Control": {
        "description": "no-store on every /v1 response: they carry tenant data such as emails.",
        "required": True,
        "schema": {"type": "string", "const": "no-store"},
    },
    "WWW-Authenticate": {
        "description": "The scheme to authenticate with: Bearer.",
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer"},
    },
    "Retry-After": {
        "description": "Whole seconds to wait before retrying the request.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
}

#: Extension on a request body: the most bytes the route reads (``ServiceSpec.body_limits``,
#: else ``http_guards.DEFAULT_BODY_LIMIT``); a larger body is a 413.
MAX_BODY_EXTENSION = "x-max-body-bytes"

_DESCRIPTIONS = {
    "400": "The request cannot be read, e.g. a body that is not JSON.",
    "401": "No API key, or not a valid one: send `Authorization: Bearer <key>`.",
    "403": "The key is valid but is not the admin key these routes need.",
    "404": "No such resource for this tenant.",
    "409": (
        "Conflicts with the current state, or reuses an id or Idempotency-Key "
        "for a different request."
    ),
    "413": "The body is larger than this route accepts.",
    "422": "The request is not valid: `errors` names each invalid field.",
    "429": (
        "This API key made more requests per second than the service allows "
        "(DUNNING_RATE_LIMIT_PER_S): retry after `Retry-After` seconds."
    ),
    "500": "Unexpected error; its `error_id` finds the traceback in the service's log.",
    "503": (
        "The database or the event bus is away for the moment (a restart, a failover): "
        "retry after `Retry-After` seconds; a retried POST is never applied twice."
    ),
}


def install_openapi(app: FastAPI, body_limits: Mapping[str, int] | None = None) -> None:
    """Make ``app``'s OpenAPI document true, and its 405 answers consistent.

    ``body_limits`` are the ones the request guards enforce (``ServiceSpec.body_limits``).
    Call once while building the app, after its routes are known or not: the document
    is generated on first request and then cached, like FastAPI's own.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(FastAPI.openapi(app), body_limits)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(AllowedMethods, paths=lambda: app.openapi()["paths"])


def document(
    generated: dict[str, Any], body_limits: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """A corrected copy of FastAPI's document ``generated`` (a pure function).

    Per operation: errors as application/problem+json with the shared
    ``ProblemDetails`` schema (400 when it takes a body, 401 and the bearer security
    requirement under /v1, 403 under /v1/admin, 404 when its path names a resource,
    409 for writes under /v1, 413 when it takes a body, 422 when it takes input, 429
    for tenant-key routes, 503 under /v1, 500 always); a 2xx response without content
    gets the content of its sibling 2xx (a replay returns the first result); the
    security headers every response carries, and ``Retry-After`` on 429 and 503. A
    request body states its size limit (``x-max-body-bytes``, from ``body_limits`` as
    the guards read them), and so does its 413.
    """
    limits = BodyLimits(body_limits or {})
    doc = copy.deepcopy(generated)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(copy.deepcopy(_SCHEMAS))
    used_schemes: set[str] = set()
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS:
                used_schemes |= _document_operation(path, method, operation)
                if "requestBody" in operation:
                    _document_body_limit(operation, limits.for_path(path))
    components.setdefault("headers", {}).update(copy.deepcopy(_HEADERS))
    if used_schemes:
        schemes = components.setdefault("securitySchemes", {})
        for name in sorted(used_schemes):
            schemes[name] = copy.deepcopy(_SECURITY_SCHEMES[name])
    # FastAPI's ValidationError is referenced only by its HTTPValidationError.
    referenced = set(_references(doc.get("paths", {})))
    if "HTTPValidationError" not in referenced:
        for name in _FASTAPI_ERROR_SCHEMAS:
            schemas.pop(name, None)
    return doc


def _references(node: Any) -> Iterable[str]:
    """Names of the component schemas ``node`` refers to (``$ref``), anywhere in it."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref.rsplit("/", 1)[-1]
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _document_operation(path: str, method: str, operation: dict[str, Any]) -> set[str]:
    """Add the responses and security of one operation; the schemes it uses."""
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    statuses = ["500"]
    schemes: set[str] = set()
    if has_body:
        statuses += ["400", "413"]
    if parameters or has_body:
        statuses.append("422")
    if any(parameter.get("in") == "path" for parameter in parameters):
        statuses.append("404")
    if path.startswith(_API_PREFIX):
        scheme = ADMIN_SCHEME if path.startswith(_ADMIN_PREFIX) else TENANT_SCHEME
        if operation.get("security") == [{SIGNATURE_SCHEME: []}]:
            scheme = SIGNATURE_SCHEME
        operation["security"] = [{scheme: []}]
        schemes.add(scheme)
        statuses += ["401", "503"]
        if scheme == ADMIN_SCHEME:
            statuses.append("403")
        elif scheme == TENANT_SCHEME:
            statuses.append("429")
        if method in _WRITES:
            statuses.append("409")
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status in statuses:
        response = responses.setdefault(status, {"description": _DESCRIPTIONS[status]})
        if response.get("description") in (None, "", "Validation Error"):
            response["description"] = _DESCRIPTIONS[status]
        response["content"] = {PROBLEM_JSON: {"schema": dict(_PROBLEM_REF)}}
    _fill_replays(responses)
    for status, response in responses.items():
        names = ["X-Content-Type-Options"]
        if path.startswith(_API_PREFIX):
            names.append("Cache-Control")
        if status == "401":
            names.append("WWW-Authenticate")
        if status in ("429", "503"):
            names.append("Retry-After")
        headers = response.setdefault("headers", {})
        for name in names:
            headers.setdefault(name, {"$ref": f"#/components/headers/{name}"})
    operation["responses"] = dict(sorted(responses.items()))
    return schemes


def _document_body_limit(operation: dict[str, Any], limit: int) -> None:
    """State the route's body limit on its request body and its 413 response."""
    operation["requestBody"][MAX_BODY_EXTENSION] = limit
    operation["responses"]["413"]["description"] = (
        f"The body is larger than this route's limit of {limit:,} bytes "
        f"(`{MAX_BODY_EXTENSION}` of the request body): a problem of type "
        f"{TYPE_BASE}body-too-large whose `errors` names `body`. Split it."
    )


def _fill_replays(responses: dict[str, Any]) -> None:
    """Give a 2xx response documented without content the content of a sibling 2xx."""
    successes = [r for status, r in responses.items() if status.startswith("2")]
    with_content = [r for r in successes if r.get("content")]
    if not with_content:
        return
    for response in successes:
        if not response.get("content"):
            response["content"] = copy.deepcopy(with_content[0]["content"])


def path_pattern(template: str) -> re.Pattern[str]:
    """The regular expression of an OpenAPI path template: ``{id}`` is one segment."""
    pieces: list[str] = []
    position = 0
    for match in _PARAMETER.finditer(template):
        pieces.append(re.escape(template[position : match.start()]))
        pieces.append(".+" if match.group(1) == ":path" else "[^/]+")
        position = match.end()
    pieces.append(re.escape(template[position:]))
    return re.compile("".join(pieces))


#: A documented path: its pattern, whether it is concrete (no parameter), its methods.
PathMethods = tuple[re.Pattern[str], bool, frozenset[str]]


def methods_table(paths: Mapping[str, Mapping[str, Any]]) -> list[PathMethods]:
    """Each documented path as a pattern, with the methods it is documented for."""
    return [
        (
            path_pattern(path),
            not _PARAMETER.search(path),
            frozenset(method.upper() for method in item if method in _METHODS),
        )
        for path, item in paths.items()
    ]


def methods_at(table: Iterable[PathMethods], path: str) -> set[str]:
    """The methods documented for ``path`` (empty: no documented path matches it).

    As OpenAPI says, a concrete path is matched before templated ones: with
    ``/v1/invoices/batch`` documented, ``GET /v1/invoices/batch`` is not the
    ``{invoice_id}`` route. Templated paths that match are taken together.
    """
    methods: set[str] = set()
    for pattern, concrete, allowed in table:
        if pattern.fullmatch(path):
            if concrete:
                return set(allowed)
            methods |= allowed
    return methods


class AllowedMethods:
    """ASGI middleware: a method a documented path does not support is a 405 problem whose
    ``Allow`` header lists every method documented for that path.

    It reads the routes from the app's own OpenAPI document, so the header and the
    document cannot disagree; paths the document does not list are left to the router.
    """

    def __init__(self, app: ASGIApp, paths: Callable[[], Mapping[str, Any]]) -> None:
        self.app = app
        self.paths = paths
        self._table: list[PathMethods] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 405 for an unsupported method, else pass the request on."""
        if scope["type"] == "http":
            if self._table is None:
                self._table = methods_table(self.paths())
            path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
            allowed = methods_at(self._table, path)
            if allowed and scope["method"] not in allowed:
                allow = ", ".join(sorted(allowed))
                problem = Problem(
                    405,
                    f"{scope['method']} is not supported here; this path allows {allow}.",
                    type_="method-not-allowed",
                    headers={"Allow": allow},
                )
                await problem_response(problem, Request(scope))(scope, receive, send)
                return
        await self.app(scope, receive, send)
