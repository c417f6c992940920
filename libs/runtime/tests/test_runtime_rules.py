"""One mapping of rule errors to problems gives each service the problem it gave before."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from dunning_runtime.problems import (
    Problem,
    RuleErrorsAsProblems,
    install_problem_handlers,
    problem_of,
    rule_errors_route,
)
from dunning_runtime.rules import Conflict, NotFound, RuleError

BASE = "https://dunning.dev/problems/"


# The shapes the four services declare (names and codes as theirs).
class InvoiceRuleError(RuleError):
    code = "invoice-rule"


class InvoiceNotFound(InvoiceRuleError, NotFound):
    code = "invoice-not-found"


class InvoiceStateConflict(InvoiceRuleError, Conflict):
    pass


class InvoiceHasPayments(InvoiceStateConflict):
    code = "invoice-has-payments"


class DunningRuleError(RuleError):
    pass


class DunningConflict(DunningRuleError, Conflict):
    code = "dunning-conflict"


def test_not_found_is_a_404_typed_by_its_code() -> None:
    problem = problem_of(InvoiceNotFound("There is no invoice 'INV-1'."))
    assert problem.body() == {
        "type": BASE + "invoice-not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "There is no invoice 'INV-1'.",
    }


def test_conflict_is_a_409_typed_by_its_code() -> None:
    problem = problem_of(InvoiceHasPayments("Reverse the payments first."))
    assert (problem.status, problem.type, problem.title) == (
        409,
        BASE + "invoice-has-payments",
        "Conflict",
    )
    assert problem.errors is None
    assert problem_of(DunningConflict("paused")).type == BASE + "dunning-conflict"
    # A conflict class without a code of its own keeps its service's base code.
    assert problem_of(InvoiceStateConflict("no")).type == BASE + "invoice-rule"


@pytest.mark.parametrize(
    ("error", "path"),
    [
        (InvoiceRuleError("must be positive", field="amount"), "body.amount"),
        (DunningRuleError("must not be in the past", "promised_date"), "body.promised_date"),
        (DunningRuleError("no"), "body"),
        (RuleError("unknown template", "key", location="path"), "path.key"),
        (RuleError("bad address", "address", location="path"), "path.address"),
        (RuleError("give at least one part"), "body"),
    ],
)
def test_a_plain_rule_error_is_a_422_naming_its_field(error: RuleError, path: str) -> None:
    problem = problem_of(error)
    assert problem.body() == {
        "type": BASE + "validation-error",
        "title": "Invalid request",
        "status": 422,
        "detail": str(error),
        "errors": [{"field": path, "message": str(error), "type": "value_error"}],
    }


def _app(route_class: type) -> FastAPI:
    router = APIRouter(route_class=route_class)

    @router.get("/missing")
    async def missing() -> None:
        raise InvoiceNotFound("There is no invoice 'X'.")

    @router.get("/other")
    async def other() -> None:
        raise KeyError("not a rule error")

    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    return app


async def test_the_shared_route_class_answers_rule_errors_as_problems() -> None:
    app = _app(RuleErrorsAsProblems)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.get("/missing")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == BASE + "invoice-not-found"
        assert response.json()["instance"] == "/missing"
        assert (await client.get("/other")).status_code == 500


async def test_a_route_class_of_another_error_type_keeps_its_own_mapping() -> None:
    def mine(error: KeyError) -> Problem:
        return Problem(418, "teapot")

    app = _app(rule_errors_route(KeyError, mine))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.get("/other")).status_code == 418
        assert (await client.get("/missing")).status_code == 500
