"""Where the four services are and how to call them.

The platform's list of services is here, not in the runtime: ``SERVICES`` in port
order (invoice, payment, dunning, notify). Service URLs are
``http://DUNNING_HOST:DUNNING_BASE_PORT + index``, as ``dunning up`` starts them (and
as each ``ServiceSpec.port_offset`` says, for a service started on its own).
Every failure to reach a service becomes :class:`Unreachable`, which the command
line prints as one line (exit code 2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from dunning_runtime.settings import DEFAULT_BASE_PORT, ServiceSettings

#: The platform's services in port order, each with the module that runs it: service
#: number ``i`` listens on ``DUNNING_BASE_PORT`` + ``i`` (its ``ServiceSpec.port_offset``).
SERVICES: tuple[tuple[str, str], ...] = (
    ("invoice-svc", "invoice_svc.main"),
    ("payment-svc", "payment_svc.main"),
    ("dunning-svc", "dunning_svc.main"),
    ("notify-svc", "notify_svc.main"),
)
SERVICE_ORDER: tuple[str, ...] = tuple(name for name, _ in SERVICES)
#: Default HTTP ports of the platform (DESIGN.md, "Public HTTP contract").
DEFAULT_PORTS: dict[str, int] = {
    name: DEFAULT_BASE_PORT + index for index, name in enumerate(SERVICE_ORDER)
}

#: Development credentials ``dunning up`` falls back to (see dunning_cli.stack).
DEV_TENANT, DEV_KEY, DEV_ADMIN_KEY = "demo", "demo-key", "dev-admin-key"


class Unreachable(Exception):
    """A service did not answer, or answered with something the command cannot use."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status it answered with, if it answered


@dataclass(frozen=True)
class Service:
    """One service of the running platform."""

    name: str
    url: str


@dataclass(frozen=True)
class Platform:
    """The running platform as a client sees it: four URLs and the keys to call them."""

    services: tuple[Service, ...]
    admin_key: str
    tenant_keys: Mapping[str, str]  # tenant -> one of its API keys
    timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Platform:
        """The platform the ``DUNNING_*`` settings describe (host, base port, keys)."""
        # A server bound to every interface is called on the loopback one.
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
        services = tuple(
            Service(name, f"http://{host}:{settings.base_port + index}")
            for index, name in enumerate(SERVICE_ORDER)
        )
        keys = {tenant: key for key, tenant in settings.api_keys.items()}
        return cls(
            services=services,
            # Unset, as under `dunning up`: the development keys it prints.
            admin_key=settings.admin_key.get_secret_value() or DEV_ADMIN_KEY,
            tenant_keys=keys or {DEV_TENANT: DEV_KEY},
        )

    def service(self, name: str) -> Service:
        """The service called ``name`` (e.g. ``invoice-svc``)."""
        return next(s for s in self.services if s.name == name)

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for calls to the services."""
        return httpx.AsyncClient(timeout=self.timeout_s)

    def key_of(self, tenant: str) -> str:
        """The API key of ``tenant``; Unreachable-like error when none is configured."""
        try:
            return self.tenant_keys[tenant]
        except KeyError:
            raise Unreachable(f"no API key for tenant {tenant!r} in DUNNING_API_KEYS") from None


async def call(
    client: httpx.AsyncClient,
    service: Service,
    method: str,
    path: str,
    *,
    key: str,
    json: Any = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    ok: tuple[int, ...] = (200, 201),
) -> Any:
    """``method path`` on ``service`` with a Bearer key; the JSON answer, or Unreachable."""
    response = await send(
        client,
        service,
        method,
        path,
        json=json,
        params=params,
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    )
    if response.status_code not in ok:
        raise Unreachable(
            f"{service.name}: {method} {path} answered {response.status_code}: {_problem(response)}"
        )
    return response.json() if response.content else None


#: Attempts at a request whose connection failed. Every call the command makes may be
#: sent twice (GETs, the clock, ticks, and POSTs that carry their resource's id), and a
#: kept-alive connection the server closed at that moment fails with nothing wrong.
ATTEMPTS = 3


async def send(
    client: httpx.AsyncClient, service: Service, method: str, path: str, **options: Any
) -> httpx.Response:
    """``method path`` on ``service``, tried again after a transport error; or Unreachable."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await client.request(method, service.url + path, **options)
        except httpx.TransportError as exc:
            if attempt == ATTEMPTS or isinstance(exc, httpx.TimeoutException):
                raise Unreachable(
                    f"{service.name} at {service.url} is unreachable ({why(exc)})"
                ) from None
            await asyncio.sleep(0.2 * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def why(exc: Exception) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _problem(response: httpx.Response) -> str:
    """The problem+json's detail (or title), on one line."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].replace("\n", " ")
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or ""
        errors = body.get("errors") or []
        fields = ", ".join(str(e.get("field") or e.get("loc") or "") for e in errors[:3])
        return f"{detail} {f'({fields})' if fields else ''}".strip()
    return str(body)[:200]
