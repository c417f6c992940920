"""Posted resources: created, replayed, conflict or invalid, and their HTTP answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from dunning_runtime import batches
from dunning_runtime.problems import Problem
from dunning_runtime.results import (
    ItemResult,
    Outcome,
    created,
    invalid,
    replay_or_conflict,
)
from dunning_runtime.rules import RuleError

BASE = "https://dunning.dev/problems/"


class Thing(BaseModel):
    thing_id: str
    amount: int


def test_the_same_content_again_is_a_replay() -> None:
    result = replay_or_conflict({"a": 1}, {"a": 1}, "view")
    assert (result.outcome, result.value, result.differences) == (Outcome.REPLAYED, "view", ())
    assert result.accepted


def test_other_content_is_a_conflict_naming_the_fields() -> None:
    result = replay_or_conflict({"a": 1, "b": [1]}, {"a": 2, "b": [2]}, "view")
    assert (result.outcome, result.value, result.differences) == (
        Outcome.CONFLICT,
        None,
        ("a", "b[0]"),
    )
    assert not result.accepted
    problem = batches.result_problem(result, "invoice", "INV-1")
    assert problem is not None
    assert problem.body() == {
        "type": BASE + "invoice-conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "Invoice 'INV-1' was already accepted with other content: a, b[0].",
        "errors": [
            {"field": "body.a", "message": "differs from the invoice already accepted"},
            {"field": "body.b[0]", "message": "differs from the invoice already accepted"},
        ],
    }


def test_where_any_content_replays_the_differences_are_listed() -> None:
    result = replay_or_conflict({"a": 1}, {"a": 2}, "view", any_content_replays=True)
    assert (result.outcome, result.value, result.differences) == (
        Outcome.REPLAYED,
        "view",
        ("a",),
    )


def test_a_rule_error_is_the_422_naming_its_field() -> None:
    result = invalid(RuleError("must be open", "allocations[0]"))
    problem = batches.result_problem(result, "payment", "PAY-1")
    assert problem is not None
    assert problem.body() == {
        "type": BASE + "validation-error",
        "title": "Invalid request",
        "status": 422,
        "detail": "must be open",
        "errors": [
            {"field": "body.allocations[0]", "message": "must be open", "type": "value_error"}
        ],
    }


def test_another_value_error_is_the_kinds_422() -> None:
    problem = batches.result_problem(invalid(ValueError("too large")), "invoice", "I")
    assert problem is not None
    assert (problem.status, problem.detail, problem.type) == (
        422,
        "The invoice is not valid.",
        BASE + "validation-error",
    )
    assert problem.errors == [{"field": "body", "message": "too large", "type": "value_error"}]
    with pytest.raises(ValidationError) as caught:
        Thing.model_validate({"thing_id": "x"})
    problem = batches.result_problem(invalid(caught.value), "payment", "P")
    assert problem is not None and problem.errors is not None
    assert [e["field"] for e in problem.errors] == ["amount"]


def test_one_post_answers_the_resource_or_raises_its_problem() -> None:
    thing = Thing(thing_id="T-1", amount=3)
    response = batches.respond(created(thing), "thing", "T-1")
    assert response.status_code == 201
    assert json.loads(response.body) == {"thing_id": "T-1", "amount": 3}
    assert batches.respond(ItemResult(Outcome.REPLAYED, thing), "thing", "T-1").status_code == 200
    with pytest.raises(Problem) as caught:
        batches.respond(replay_or_conflict({"a": 1}, {"a": 2}, thing), "thing", "T-1")
    assert caught.value.status == 409
    assert batches.result_problem(created(thing), "thing", "T-1") is None


def test_a_batch_refuses_invalid_items_on_their_own() -> None:
    raws: list[Any] = [
        {"thing_id": "A", "amount": 1},
        {"thing_id": "B"},
        "not an object",
        {"thing_id": 7, "amount": 1},
    ]
    parsed = batches.parse_items(
        raws, Thing, collection="things", kind="thing", id_field="thing_id"
    )
    assert [(i, t.thing_id) for i, t in parsed.valid] == [(0, "A")]
    assert [(r.index, r.resource_id) for r in parsed.refused] == [(1, "B"), (2, None), (3, None)]
    first = parsed.refused[0].problem
    assert first["status"] == 422
    assert first["detail"] == "The thing is not valid."
    assert [e["field"] for e in first["errors"]] == ["body.things[1].amount"]
    assert [e["field"] for e in parsed.refused[1].problem["errors"]] == ["body.things[2]"]


def test_an_items_problem_names_its_place_in_the_batch() -> None:
    body = {"errors": [{"field": "body.allocations[0]"}, {"field": "body"}]}
    assert batches.within_item(body, "payments", 3)["errors"] == [
        {"field": "body.payments[3].allocations[0]"},
        {"field": "body.payments[3]"},
    ]
    assert batches.within_item({"status": 409}, "payments", 3) == {"status": 409}


def test_a_batch_tally_counts_200_and_201_as_accepted() -> None:
    assert batches.tally([201, 200, 409, 422, 201]) == (3, 2)
    assert batches.tally([]) == (0, 0)
    assert {o: batches.STATUS[o] for o in Outcome} == {
        Outcome.CREATED: 201,
        Outcome.REPLAYED: 200,
        Outcome.CONFLICT: 409,
        Outcome.INVALID: 422,
    }
