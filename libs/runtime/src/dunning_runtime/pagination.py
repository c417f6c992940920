"""Opaque, validated cursors for keyset pagination over a sequence column.

A cursor names the last row of a page by its sequence id. Clients must treat it
as opaque, and the server checks whatever comes back: garbage or a number no
sequence can reach is a 422 naming ``query.cursor``, never a 500.
"""

from __future__ import annotations

import base64
import binascii

from dunning_runtime.problems import field_problem

#: The largest sequence id a cursor can carry: a signed 64-bit integer, as BIGINT stores.
MAX_POSITION = 2**63 - 1
_PREFIX = "s:"


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
