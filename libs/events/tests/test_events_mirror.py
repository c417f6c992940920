"""The msgspec mirrors of the event classes (``mirror``) accept only what pydantic
accepts, and give exactly pydantic's instance: mirror accepts => pydantic accepts with
an equal model (every value, its type and text, the fields set), over the samples of
every class and generated documents, valid and mutated. Where the mirror refuses,
``validate_payload`` is pydantic itself: the same error."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from dunning_events import EVENT_CLASSES, Event, InvoiceIssued
from dunning_events.mirror import MIRRORS, validate_payload
from dunning_events.samples import sample_event

MIRRORED = sorted(MIRRORS, key=lambda cls: cls.__name__)


def anatomy(value: Any) -> Any:
    """Everything about a validated value, down to each Decimal's digits and each
    instant's offset."""
    if isinstance(value, BaseModel):
        return (
            type(value),
            [(name, anatomy(item)) for name, item in value.__dict__.items()],
            value.__pydantic_fields_set__,
            value.__pydantic_extra__,
            value.__pydantic_private__,
        )
    if isinstance(value, (list, tuple)):
        return (type(value), [anatomy(item) for item in value])
    if isinstance(value, datetime):
        return (type(value), value.isoformat(), value.tzinfo, value.fold)
    return (type(value), repr(value))


def outcome(call: Any) -> Any:
    try:
        return ("accepted", anatomy(call()))
    except ValidationError as exc:
        return ("refused", exc.errors(include_url=False).__repr__())


def check(cls: type[Event], raw: bytes) -> None:
    """mirror accepts => pydantic accepts, equal; and validate_payload is pydantic."""
    try:
        mirrored = MIRRORS[cls].decode(raw)
    except Exception:
        mirrored = None
    if mirrored is not None:
        expected = cls.model_validate_json(raw, strict=True)  # must accept
        assert anatomy(mirrored) == anatomy(expected)
    assert outcome(lambda: validate_payload(cls, raw)) == outcome(
        lambda: cls.model_validate_json(raw, strict=True)
    )


def test_every_event_class_but_one_has_a_mirror() -> None:
    # InvoiceIssued has a dict (tax breakdown) node the mirror does not know.
    assert set(MIRRORS) == set(EVENT_CLASSES) - {InvoiceIssued}


@pytest.mark.parametrize("cls", MIRRORED, ids=[c.__name__ for c in MIRRORED])
def test_every_sample_is_the_same_model(cls: type[Event]) -> None:
    raw = sample_event(cls).model_dump_json().encode()
    assert MIRRORS[cls].decode(raw) is not None
    check(cls, raw)


# -- generated documents ---------------------------------------------------------------

amounts = st.from_regex(r"-?[0-9]{1,17}(\.[0-9]{0,14})?", fullmatch=True) | st.sampled_from(
    ["0", "0.00", "-0.00", "1e3", " 1.00", "1.00\n", "1_000.00", "NaN", "Infinity", "+1.00", "٣.00"]
)
days = st.dates(date(1990, 1, 1), date(2250, 1, 1)).map(date.isoformat) | st.sampled_from(
    ["2026-02-30", "2026-3-1", "20260301", "2026-03-01T00:00:00", "2026-03-01\n", ""]
)
offsets = st.sampled_from([timedelta(0), timedelta(hours=2), timedelta(hours=-3, minutes=-30)])
instants = st.builds(
    lambda moment, offset: moment.replace(tzinfo=timezone(offset)).isoformat(),
    st.datetimes(datetime(1998, 1, 1), datetime(2201, 1, 1)),
    offsets,
) | st.sampled_from(
    [
        "2026-03-15T09:30:00Z",
        "2026-03-15T09:30:00",
        "2026-03-15 09:30:00Z",
        "2026-03-15t09:30:00z",
        "2026-03-15T09:30:00.1234567Z",
        "2026-03-15T09:30:60Z",
        "2026-03-15T09:30:00+05:45",
        "2026-03-15T09:30:00+00:44:30",
        "1773567000",
    ]
)
texts = st.text(max_size=40) | st.sampled_from(
    ["", ".", "..", "a\n", "EUR", "eur", "EURO", "Europe/Berlin", "a" * 101, "x" * 201, "en", "€"]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
    | amounts
    | days
    | instants
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document that holds a value."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def mutate(document: Any, data: st.DataObject) -> Any:
    places = paths(document)
    if not places:
        return document
    path = data.draw(st.sampled_from(places))
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    old = parent[last]
    kind = data.draw(st.sampled_from(["replace", "near", "delete", "extra"]))
    if kind == "delete" and isinstance(parent, dict):
        del parent[last]
    elif kind == "extra" and isinstance(parent, dict):
        parent[data.draw(texts)] = data.draw(json_values)
    elif kind == "near" and isinstance(old, str):
        parent[last] = data.draw(
            st.sampled_from(
                [old + "\n", " " + old, old.upper(), old.lower(), old[:-1], old + old, old + "0"]
            )
        )
    elif kind == "near" and isinstance(old, int) and not isinstance(old, bool):
        parent[last] = data.draw(st.sampled_from([old - 1, old + 1, -old, float(old), str(old)]))
    else:
        parent[last] = data.draw(json_values)
    return document


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_what_the_mirror_accepts_pydantic_accepts_as_the_same_model(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(MIRRORED))
    document = sample_event(cls).model_dump(mode="json")
    for _ in range(data.draw(st.integers(0, 3))):
        document = mutate(document, data)
    ascii_only = data.draw(st.booleans())
    check(cls, json.dumps(document, ensure_ascii=ascii_only).encode())


@settings(max_examples=300)
@given(st.data())
def test_valid_documents_of_other_values_are_the_same_model(data: st.DataObject) -> None:
    """Mutations that keep the types: other texts, numbers, amounts, days and instants
    at their places, so many documents are valid and take the mirror's path."""
    cls = data.draw(st.sampled_from(MIRRORED))
    document = sample_event(cls).model_dump(mode="json")
    for path in paths(document):
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        old = parent[path[-1]]
        if not data.draw(st.booleans()):
            continue
        if isinstance(old, str):
            kinds = [texts]
            if _looks_like(old, Decimal):
                kinds = [amounts]
            elif len(old) == 10 and old[4] == "-":
                kinds = [days]
            elif "T" in old and old[:4].isdigit():
                kinds = [instants]
            parent[path[-1]] = data.draw(st.one_of(*kinds))
        elif isinstance(old, int) and not isinstance(old, bool):
            parent[path[-1]] = data.draw(st.integers(-5, 400))
    check(cls, json.dumps(document).encode())


def _looks_like(text: str, _kind: type) -> bool:
    return bool(text) and text.replace(".", "", 1).lstrip("-").isdigit()


RAW = [
    b'{"account_id": "a", "account_id": "b"}',
    b'{"account_id": "\\ud800"}',
    b'{"account_id": "a\x01"}',
    b'{"account_id": "\xff"}',
    b'\xef\xbb\xbf{"account_id": "a"}',
    b'{"account_id": "a"} x',
    b"[]",
    b"",
]


@pytest.mark.parametrize("raw", RAW)
@pytest.mark.parametrize("cls", MIRRORED, ids=[c.__name__ for c in MIRRORED])
def test_odd_bytes_get_the_same_verdict(cls: type[Event], raw: bytes) -> None:
    check(cls, raw)
    # The same oddities inside a valid document.
    valid = sample_event(cls).model_dump_json().encode()
    for odd in (b'"\\ud800"', b'"a\x01"', b'"\xff"'):
        check(cls, valid.replace(b'"' + valid.split(b'"')[3] + b'"', odd, 1))
    check(cls, valid[:-1] + b", " + valid[1:])  # every key twice
