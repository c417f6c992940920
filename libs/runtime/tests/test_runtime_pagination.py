"""Keyset and offset pages: one row more than the page says whether a next one exists."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select

from dunning_runtime.pagination import (
    decode_cursor,
    encode_cursor,
    keyset,
    keyset_page,
    offset_of,
    offset_page,
    position_of,
)
from dunning_runtime.problems import Problem

metadata = MetaData()
items = Table(
    "items", metadata, Column("seq", Integer, primary_key=True), Column("name", String(10))
)


def _pages(limit: int) -> list[list[int]]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(items), [{"seq": s, "name": f"n{s}"} for s in (3, 1, 7, 5, 9)])
        pages: list[list[int]] = []
        cursor: str | None = None
        while True:
            query = keyset(select(items), items.c.seq, position_of(cursor), limit)
            rows = conn.execute(query).mappings().all()
            page = keyset_page(rows, limit, lambda r: int(r["seq"]))
            pages.append([r["seq"] for r in page.items])
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    engine.dispose()
    return pages


def test_keyset_pages_walk_the_sequence_in_order() -> None:
    assert _pages(2) == [[1, 3], [5, 7], [9]]
    assert _pages(5) == [[1, 3, 5, 7, 9]]
    assert _pages(10) == [[1, 3, 5, 7, 9]]


def test_a_page_names_the_next_by_its_last_position() -> None:
    page = keyset_page([1, 2, 3], 2, lambda n: n * 10)
    assert page.items == [1, 2]
    assert page.next_cursor == encode_cursor(20)
    assert keyset_page([1, 2], 2, lambda n: n).next_cursor is None
    assert keyset_page([], 2, lambda n: n).items == []


def test_no_cursor_or_an_empty_one_is_the_first_page() -> None:
    assert position_of(None) is None
    assert position_of("") is None
    assert position_of(encode_cursor(41)) == 41
    assert offset_of(None) == 0
    assert offset_of(encode_cursor(200)) == 200


def test_a_bad_cursor_is_a_422_naming_the_field() -> None:
    with pytest.raises(Problem) as caught:
        position_of("garbage!", "query.after")
    assert caught.value.status == 422
    assert caught.value.errors == [
        {"field": "query.after", "message": "not a valid cursor", "type": "value_error"}
    ]
    assert decode_cursor(encode_cursor(7)) == 7


def test_offset_pages_continue_at_offset_plus_limit() -> None:
    page = offset_page(["a", "b", "c"], 40, 2)
    assert page.items == ["a", "b"]
    assert page.next_cursor == encode_cursor(42)
    assert offset_page(["a"], 40, 2).next_cursor is None
