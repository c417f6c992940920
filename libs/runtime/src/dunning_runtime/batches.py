"""The HTTP side of posted resources: ``ItemResult``s as statuses, problems and batch items.

One POST of a resource answers its result (201, 200, or the problem); a batch
answers one result per item, in order, after refusing the items that are not
even valid JSON of the item's model (422 naming ``body.<collection>[i].<field>``)
without stopping the others. The wording is the services': ``kind`` is the
resource (``invoice``), and its problems say "The invoice is not valid.".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from dunning_runtime.idempotency import conflict_problem
from dunning_runtime.problems import Problem, rule_problem, validation_errors
from dunning_runtime.results import ItemResult, Outcome
from dunning_runtime.rules import RuleError

M = TypeVar("M", bound=BaseModel)

#: The status of each outcome.
STATUS = {
    Outcome.CREATED: 201,
    Outcome.REPLAYED: 200,
    Outcome.CONFLICT: 409,
    Outcome.INVALID: 422,
}


def errors_of(error: ValueError) -> list[dict[str, Any]]:
    """The ``errors`` entries of a refused item: pydantic's, one per field, or one entry
    naming the whole ``body``."""
    if isinstance(error, ValidationError):
        return validation_errors(error.errors())
    return [{"field": "body", "message": str(error), "type": "value_error"}]


def invalid_problem(kind: str, errors: list[dict[str, Any]]) -> Problem:
    """The 422 for a ``kind`` item whose ``errors`` name the fields at fault."""
    return Problem(422, f"The {kind} is not valid.", type_="validation-error", errors=errors)


def result_problem(result: ItemResult[Any], kind: str, resource_id: str) -> Problem | None:
    """The problem of a refused item (None when it was accepted): a conflict names the
    fields that differ; a rule error names its field; another error, the fields at fault."""
    if result.outcome is Outcome.CONFLICT:
        return conflict_problem(kind, resource_id, list(result.differences))
    if result.outcome is Outcome.INVALID:
        assert result.error is not None
        if isinstance(result.error, RuleError):
            return rule_problem(result.error)
        return invalid_problem(kind, errors_of(result.error))
    return None


def respond(result: ItemResult[BaseModel], kind: str, resource_id: str) -> JSONResponse:
    """The answer to one POST of a resource: the resource with 201 or 200, or its problem
    raised (a 409 or 422)."""
    problem = result_problem(result, kind, resource_id)
    if problem is not None:
        raise problem
    assert result.value is not None
    return JSONResponse(result.value.model_dump(mode="json"), status_code=STATUS[result.outcome])


@dataclass(frozen=True)
class Refused:
    """A batch item that is not valid JSON of the item's model: its id if it had a string
    one, and the problem body naming its fields."""

    index: int
    resource_id: str | None
    problem: dict[str, Any]


@dataclass(frozen=True)
class Parsed(Generic[M]):
    """A batch's items split into the valid ones (with their index) and the refused ones."""

    valid: list[tuple[int, M]]
    refused: list[Refused]


def parse_items(
    raws: Sequence[Any], model: type[M], *, collection: str, kind: str, id_field: str
) -> Parsed[M]:
    """Validate each raw item of a batch on its own as ``model``; a refused item's
    problem names ``body.<collection>[i].<field>`` and its ``id_field`` if it is a string."""
    valid: list[tuple[int, M]] = []
    refused: list[Refused] = []
    for index, raw in enumerate(raws):
        try:
            valid.append((index, model.model_validate(raw)))
        except ValidationError as exc:
            raw_id = raw.get(id_field) if isinstance(raw, dict) else None
            errors = validation_errors(exc.errors())
            for error in errors:
                error["field"] = f"body.{collection}[{index}].{error['field']}".rstrip(".")
            refused.append(
                Refused(
                    index,
                    raw_id if isinstance(raw_id, str) else None,
                    invalid_problem(kind, errors).body(),
                )
            )
    return Parsed(valid, refused)


def within_item(problem: dict[str, Any], collection: str, index: int) -> dict[str, Any]:
    """A problem body of item ``index`` whose ``errors`` name ``body.<collection>[i]...``
    instead of ``body...`` (the item's own fields, as seen from the whole batch)."""
    for error in problem.get("errors") or []:
        error["field"] = error["field"].replace("body", f"body.{collection}[{index}]", 1)
    return problem


def tally(statuses: Iterable[int]) -> tuple[int, int]:
    """How many items of a batch were accepted (200 or 201) and how many refused."""
    accepted = rejected = 0
    for status in statuses:
        if status in (200, 201):
            accepted += 1
        else:
            rejected += 1
    return accepted, rejected
