"""Opaque, validated cursors for keyset pagination over a sequence column.

A cursor names the last row of a page by its sequence id. Clients must treat it
as opaque, and the server checks whatever comes back: garbage or a number no
sequence can reach is a 422 naming ``query.cursor``, never a 500.

A list route reads a page in three steps, the same in every service: the route
turns the cursor into a position (``position_of``), storage reads one row more
than the page after it (``keyset``), and ``keyset_page`` keeps the page and says
where the next one starts. A list whose order is not the sequence (dunning-svc's
worklist) pages by offset instead: ``offset_of`` and ``offset_page``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from sqlalchemy import ColumnElement, Select

from dunning_runtime.problems import field_problem

#: The largest sequence id a cursor can carry: a signed 64-bit integer, as BIGINT stores.
MAX_POSITION = 2**63 - 1
#: The most items one page may hold (``limit``), on every list of every service.
MAX_PAGE = 1000

#: The query parameters every paged list takes: ``cursor`` (opaque, ``next_cursor`` of
#: the previous page) and ``limit`` (the page size; each route sets its default).
Cursor = Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page")]
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
_PREFIX = "s:"

T = TypeVar("T")
Q = TypeVar("Q", bound=Select[Any])


def encode_cursor(position: int) -> str:
    """The cursor that continues after the row with sequence id ``position``."""
    raw = f"{_PREFIX}{position}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, field: str = "query.cursor") -> int:
    """The sequence id in ``cursor``; a 422 problem naming ``field`` if it is not one
    ``encode_cursor`` could have made."""
    try:
        if len(cursor) > 64:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not raw.startswith(_PREFIX) or not raw[len(_PREFIX) :].isdigit():
            raise ValueError("not a cursor")
        position = int(raw[len(_PREFIX) :])
        if position > MAX_POSITION:
            raise ValueError("out of range")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise field_problem(
            "The cursor is not one this API returned; pass next_cursor from a page unchanged.",
            field,
            "not a valid cursor",
        ) from None
    return position


def position_of(cursor: str | None, field: str = "query.cursor") -> int | None:
    """The sequence id a page continues after: None without a cursor (an empty one
    included: the first page), else ``decode_cursor``'s (a 422 naming ``field`` if bad)."""
    return decode_cursor(cursor, field) if cursor else None


def keyset(query: Q, column: ColumnElement[Any], after: int | None, limit: int) -> Q:
    """``query`` ordered by the sequence ``column``, from the row after ``after`` (the
    first row when None), reading ``limit`` + 1 rows: the one more says a next page exists."""
    if after is not None:
        query = query.where(column > after)
    return query.order_by(column).limit(limit + 1)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next (None on the last page)."""

    items: list[T]
    next_cursor: str | None


def keyset_page(rows: Sequence[T], limit: int, position: Callable[[T], int]) -> Page[T]:
    """The page in ``rows`` (read by ``keyset``, so up to ``limit`` + 1 of them): the first
    ``limit``, and a cursor after the last of them (by its ``position``) when more follow."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return Page(items, encode_cursor(position(items[-1])) if more else None)


def offset_of(cursor: str | None, field: str = "query.cursor") -> int:
    """The offset a page of an offset-paged list starts at: 0 without a cursor."""
    return decode_cursor(cursor, field) if cursor else 0


def offset_page(rows: Sequence[T], offset: int, limit: int) -> Page[T]:
    """The page in ``rows`` read at ``offset`` with ``limit`` + 1 rows: the first ``limit``,
    and the next page's cursor (its offset) when more follow.

    For lists sorted by a value that moves (a balance): a page may repeat or skip a line.
    """
    more = len(rows) > limit
    return Page(list(rows[:limit]), encode_cursor(offset + limit) if more else None)
