"""``dunning keys``: managed API keys through the admin routes of one service.

Any one service will do: the one that takes the call publishes the change, and every
service (each with its own database) learns it within seconds. Calls use the admin key
of the settings (``DUNNING_ADMIN_KEY``), as the clock commands do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from rich.table import Table

from dunning_cli.platform import Platform, Service, Unreachable, send

ADMIN_KEYS = "/v1/admin/keys"


@dataclass(frozen=True)
class Refused(Exception):
    """The service answered the request with a 4xx: ``status`` and its problem's detail."""

    status: int
    detail: str

    def __str__(self) -> str:
        return self.detail


async def admin_call(
    platform: Platform,
    client: httpx.AsyncClient,
    service: Service,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> Any:
    """An admin call; its JSON answer, ``Refused`` for a 404 or 409 (the command ran and
    found the key missing or unusable), ``Unreachable`` for anything else."""
    response = await send(
        client,
        service,
        method,
        path,
        json=body,
        headers={"Authorization": f"Bearer {platform.admin_key}"},
    )
    if response.is_success:
        return response.json()
    detail = _detail(response)
    if response.status_code in (404, 409):
        raise Refused(response.status_code, detail)
    raise Unreachable(
        f"{service.name}: {method} {path} answered {response.status_code}: {detail}",
        response.status_code,
    )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return str(body)[:200]
    fields = ", ".join(str(e.get("field", "")) for e in body.get("errors") or [])
    return f"{body.get('detail', '')}{f' ({fields})' if fields else ''}"


def new_key_body(tenant: str | None, admin: bool, expires_at: datetime | None) -> dict[str, Any]:
    """The body of ``POST /v1/admin/keys``."""
    body: dict[str, Any] = {"role": "admin"} if admin else {"tenant": tenant}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    return body


def rotation_body(overlap: timedelta) -> dict[str, Any]:
    """The body of ``POST /v1/admin/keys/{id}/rotate``."""
    return {"overlap_s": int(overlap.total_seconds())}


def owner(key: dict[str, Any]) -> str:
    """``tenant acme`` or ``admin``."""
    return "admin" if key["role"] == "admin" else f"tenant {key['tenant']}"


def keys_table(items: list[dict[str, Any]]) -> Table:
    """The keys as a table: never a key, never a hash (the routes hold neither)."""
    table = Table(title="API keys", title_justify="left")
    for column in ("id", "for", "prefix", "state", "created", "expires", "revoked"):
        table.add_column(column, no_wrap=column in ("id", "prefix"))
    for key in items:
        table.add_row(
            key["key_id"],
            owner(key),
            key["prefix"],
            key["state"],
            _when(key["created_at"]),
            _when(key["expires_at"]),
            _when(key["revoked_at"]),
        )
    return table


def _when(instant: str | None) -> str:
    if instant is None:
        return "-"
    return datetime.fromisoformat(instant).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
