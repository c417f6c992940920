"""notify-svc test helpers: real protocol peers (an aiosmtpd SMTP server, an HTTP
server under uvicorn), requests published on the real bus, and readers of the
notifications topic."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from typing import Any

import httpx
import uvicorn
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dunning_events import Envelope, NotificationRequested, make_envelope, topics
from dunning_events.codec import from_kafka, to_kafka
from dunning_events.samples import TRACEPARENT, sample_event
from dunning_runtime.bus import create_bus
from dunning_runtime.bus.port import OutgoingMessage
from tests.support.ports import free_port

ACME = {"Authorization": "Bearer acme-key"}
GLOBEX = {"Authorization": "Bearer globex-key"}
START = "2026-03-15T09:00:00Z"
WEBHOOK_SECRET = "whsec-test"


# -- SMTP --------------------------------------------------------------------------


@dataclass
class SmtpServer:
    """An aiosmtpd server in the test's event loop; ``replies`` script the answers to
    RCPT (``rcpt``) and DATA (``data``), first come first served, then 250."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    #: Recipients answered 451 (mailbox busy) for as long as they are in the set.
    deferred: set[str] = field(default_factory=set)
    #: Per accepted message: whether it came over TLS and after a successful AUTH.
    secured: list[tuple[bool, bool]] = field(default_factory=list)
    #: Connections the server accepted, and how many of them have ended.
    connections: int = 0
    closed: int = 0
    #: Replies to MAIL FROM, first come first served, then 250.
    mail_replies: list[str] = field(default_factory=list)
    #: Close the connection after accepting every n-th message (0: never).
    drop_every: int = 0

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, options: Any
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, options: Any
    ) -> str:
        if address in self.deferred:
            return "451 4.2.1 mailbox busy, try later"
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        self.secured.append((session.ssl is not None, bool(session.authenticated)))
        if self.drop_every and len(self.messages) % self.drop_every == 0:
            # After the 250 is written: the transport flushes it, then closes.
            transport = server.transport
            assert transport is not None
            asyncio.get_running_loop().call_soon(transport.close)
        return "250 2.0.0 accepted"


class _CountingSMTP(SMTP):
    """aiosmtpd's server, counting the connections it accepts and sees end."""

    def __init__(self, handler: SmtpServer, **options: Any) -> None:
        super().__init__(handler, **options)
        self.recorder = handler

    def connection_made(self, transport: Any) -> None:
        self.recorder.connections += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.recorder.closed += 1
        super().connection_lost(error)


@contextlib.asynccontextmanager
async def smtp_server(**options: Any) -> AsyncIterator[SmtpServer]:
    """A real SMTP server on a free local port; ``options`` go to aiosmtpd's ``SMTP``
    (``tls_context``, ``require_starttls``, ``auth_required``, ``authenticator``...)."""
    handler = SmtpServer()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _CountingSMTP(handler, hostname="smtp.test", loop=loop, **options), "127.0.0.1", 0
    )
    handler.port = server.sockets[0].getsockname()[1]
    try:
        yield handler
    finally:
        server.close()
        await server.wait_closed()


# -- HTTP --------------------------------------------------------------------------


@dataclass
class HttpServer:
    """A local HTTP server recording every request; ``replies`` script (status, delay)
    answers, then 200. ``signature_ok`` says per request whether Dunning-Signature
    verified with ``WEBHOOK_SECRET``."""

    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: list[tuple[int, float]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(
            {
                "path": request.url.path,
                "headers": dict(request.headers),
                "body": body,
                "signature_ok": verify(request.headers.get("dunning-signature", ""), body),
            }
        )
        status, delay = self.replies.pop(0) if self.replies else (200, 0.0)
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse({"id": f"msg-{len(self.requests)}"}, status_code=status)


def verify(header: str, body: bytes) -> bool:
    """Check ``t=...,v1=...`` as payment-svc does: HMAC-SHA256 over ``t.body``."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        expected = hmac.new(
            WEBHOOK_SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256
        ).hexdigest()
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(expected, parts.get("v1", ""))


@contextlib.asynccontextmanager
async def http_server() -> AsyncIterator[HttpServer]:
    """A real HTTP server (uvicorn) on a free local port."""
    recorder = HttpServer(port=free_port())
    app = Starlette(routes=[Route("/{path:path}", recorder.receive, methods=["POST"])])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=recorder.port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield recorder
    finally:
        server.should_exit = True
        await task


# -- the bus -----------------------------------------------------------------------


def request(**changes: Any) -> NotificationRequested:
    """A valid consolidated notice for ACME-0042, with ``changes``."""
    return sample_event(NotificationRequested, **{"not_before": None, **changes})


def three_invoices(locale: str = "de-DE", **changes: Any) -> NotificationRequested:
    """An overdue_1 email listing three overdue invoices and their total."""
    invoices = [
        {
            "invoice_id": f"INV-100{n}",
            "number": f"2026-100{n}",
            "amount_due": {"amount": amount, "currency": "EUR"},
            "balance": {"amount": amount, "currency": "EUR"},
            "due_date": date(2026, 3, n),
            "days_past_due": 15 - n,
        }
        for n, amount in ((1, "1250.00"), (2, "980.50"), (3, "2000.00"))
    ]
    return request(
        locale=locale,
        invoices=invoices,
        total_overdue=[{"amount": "4230.50", "currency": "EUR"}],
        total_open=[{"amount": "4230.50", "currency": "EUR"}],
        **changes,
    )


async def publish(
    settings: Any, *events: Any, tenant: str = "acme", traceparent: str | None = TRACEPARENT
) -> list[Envelope]:
    """Publish events as dunning-svc would, each in its own envelope."""
    envelopes = [
        make_envelope(e, tenant=tenant, source="/dunning-svc", time=START, traceparent=traceparent)  # type: ignore[arg-type]
        for e in events
    ]
    bus = create_bus(settings)
    await bus.start()
    try:
        messages = []
        for envelope in envelopes:
            kafka = to_kafka(envelope)
            messages.append(
                OutgoingMessage(envelope.data.topic, kafka.key, kafka.value, kafka.headers)
            )
        await bus.publish(messages)
    finally:
        await bus.close()
    return envelopes


async def published(settings: Any, count: int, *, timeout: float = 30) -> list[Envelope]:
    """The events on the notifications topic once ``count`` arrived (and any more)."""
    bus = create_bus(settings)
    await bus.start()
    reader = bus.consumer(f"reader-{count}-{id(settings)}", [topics.NOTIFICATIONS])
    await reader.start()
    records: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while len(records) < count and loop.time() < deadline:
            records += await reader.poll(0.5, 1000)
        records += await reader.poll(1.0, 1000)
    finally:
        await reader.stop()
        await bus.close()
    return [from_kafka(r.key, r.value, r.headers) for r in records]


async def until(
    check: Callable[[], Awaitable[bool]], timeout: float = 30, what: str = "it"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"{what} did not happen in time"
        await asyncio.sleep(0.05)


async def settled(
    client: httpx.AsyncClient, notification_id: str, headers: dict[str, str] = ACME
) -> dict[str, Any]:
    """The notice once it is no longer pending."""
    found: dict[str, Any] = {}

    async def done() -> bool:
        response = await client.get(f"/v1/notifications/{notification_id}", headers=headers)
        if response.status_code != 200:
            return False
        found.update(response.json())
        return bool(found["status"] != "pending")

    await until(done, what=f"{notification_id} settling")
    return found
