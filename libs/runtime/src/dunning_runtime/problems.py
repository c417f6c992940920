"""RFC 9457 problem details for every error a service returns (principle 10)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from dunning_runtime.rules import Conflict, NotFound, RuleError

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://dunning.dev/problems/"


class Problem(Exception):
    """An error to answer as problem+json; raise it from routes and domain code."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = TYPE_BASE + (type_ or HTTPStatus(status).phrase.lower().replace(" ", "-"))
        self.errors = errors
        self.headers = headers
        self.extensions = extensions

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The JSON body of the problem."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extensions)
        return body


def field_problem(detail: str, field: str, message: str | None = None) -> Problem:
    """A 422 naming the one ``field`` (``body.allocations[0]``, ``query.from``) a rule
    refused; ``message`` says what is wrong with it (``detail`` when not given)."""
    return Problem(
        422,
        detail,
        type_="validation-error",
        title="Invalid request",
        errors=[{"field": field, "message": message or detail, "type": "value_error"}],
    )


def rule_problem(error: RuleError) -> Problem:
    """The 422 for a rule ``error``: its message, naming the field it refused (``error.path``)."""
    return field_problem(str(error), error.path)


def problem_of(error: RuleError) -> Problem:
    """The one mapping of rule errors to problems: a ``NotFound`` is a 404 and a
    ``Conflict`` a 409, both typed by the error's ``code``; any other is a 422 naming
    the field (``rule_problem``)."""
    if isinstance(error, NotFound):
        return Problem(404, str(error), type_=error.code)
    if isinstance(error, Conflict):
        return Problem(409, str(error), type_=error.code)
    return rule_problem(error)


E = TypeVar("E", bound=Exception)


def rule_errors_route(
    error_type: type[E] | type[RuleError] = RuleError,
    problem_of: Callable[[E], Problem] | Callable[[RuleError], Problem] = problem_of,
) -> type[APIRoute]:
    """A route class answering domain errors as problems, in one place.

    ``APIRouter(route_class=rule_errors_route())``: a route that lets a ``RuleError``
    escape answers ``problem_of(error)`` (the shared mapping) instead of a 500, so
    routes call the domain without a try/except of their own. A service with errors of
    another kind passes its ``error_type`` and mapping.
    """
    mapping: Callable[[Any], Problem] = problem_of
    caught: type[Exception] = error_type

    class RuleErrorsAsProblems(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except caught as error:
                    raise mapping(error) from error

            return handle

    RuleErrorsAsProblems.__name__ = f"{error_type.__name__}sAsProblems"
    return RuleErrorsAsProblems


#: The route class for routers whose errors are ``RuleError``s: the shared mapping.
RuleErrorsAsProblems = rule_errors_route()


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    """A problem as a response with the problem+json media type."""
    return JSONResponse(
        problem.body(request.url.path if request else None),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "lines", 0, "amount")`` as ``body.lines[0].amount``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """pydantic errors as ``{"field", "message", "type"}`` entries.

    A model validator that refuses the whole model can name the field it means by
    raising a ``ValueError`` with a ``loc`` tuple (say ``("steps", 3, "days_past_due")``):
    it is appended to the model's own location, so the 422 names that field.
    """
    return [
        {
            "field": field_path((*err["loc"], *_inner_loc(err))),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in errors
    ]


def _inner_loc(error: Any) -> tuple[Any, ...]:
    cause = (error.get("ctx") or {}).get("error")
    loc = getattr(cause, "loc", ())
    return tuple(loc) if isinstance(loc, tuple | list) else ()


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(exc.errors())
        fields = ", ".join(e["field"] for e in errors[:5])
        problem = Problem(
            422,
            f"The request is not valid: check {fields}.",
            type_="validation-error",
            title="Invalid request",
            errors=errors,
        )
        return problem_response(problem, request)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        problem = Problem(
            exc.status_code,
            str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        )
        return problem_response(problem, request)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
