"""Log lines: one JSON object each, with the active span's ids and the request's tenant,
and no email address or phone number."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, topics
from dunning_runtime import logs
from dunning_runtime.app import create_app
from dunning_runtime.auth import Tenant
from dunning_runtime.consumer import EventConsumer, Subscription
from tests.bus.test_dead_letter import run_until, setup
from tests.support import ledger
from tests.support.events import message, overdue
from tests.support.fixtures import ledger_spec
from tests.support.serving import serving

log = logging.getLogger("tests.metrics.logs")


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the platform's JSON formatter writes for records of this test's logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter("test-svc"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        log.removeHandler(handler)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_active_spans_ids(lines: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        log.warning("invoice %s is %d days late", "INV-1", 3)
    log.info("outside any span")
    inside, outside = records(lines)
    context = span.get_span_context()
    assert inside == {
        "time": inside["time"],
        "level": "WARNING",
        "service": "test-svc",
        "logger": "tests.metrics.logs",
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "message": "invoice INV-1 is 3 days late",
    }
    assert inside["time"].endswith("+00:00")
    assert "trace_id" not in outside and "span_id" not in outside and "tenant" not in outside


def test_exceptions_and_personal_data(lines: io.StringIO) -> None:
    try:
        raise ValueError("550 mailbox ap@acme.example unknown; call +49 30 1234567")
    except ValueError:
        log.exception("sending to dana.fischer@acme.example failed")
    (line,) = records(lines)
    text = json.dumps(line)
    assert "acme.example" not in text and "1234567" not in text
    assert line["message"] == "sending to <email> failed"
    assert "ValueError: 550 mailbox <email> unknown; call <phone>" in line["exception"]


def test_percent_encoded_addresses_in_urls_are_masked_too() -> None:
    # An access log line or a span's URL quotes the path as sent: "+" may be "%2B".
    assert logs.scrub('"POST /v1/contacts/%2B4915112345678/opt-out" 200') == (
        '"POST /v1/contacts/<phone>/opt-out" 200'
    )
    assert logs.scrub("/v1/contacts/zq%40example.org") == "/v1/contacts/<email>"
    assert logs.scrub("/v1/invoices?account_id=a%20b") == "/v1/invoices?account_id=a%20b"


def test_data_loggers_stay_quiet_at_debug() -> None:
    # aiosqlite quotes every statement's parameters (contact names) at DEBUG.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.handlers = [h for h in root.handlers if not isinstance(h, logs._Handler)]
    try:
        logs.setup_logging("test-svc", "DEBUG", "json")
        for name in logs.DATA_LOGGERS:
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger("dunning_runtime").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers, root.level = handlers, level


def test_text_format_says_the_same_for_people() -> None:
    record = logging.LogRecord(
        "svc.x", logging.INFO, __file__, 1, "paid by %s", ("a@b.example",), None
    )
    with logs.tenant_context("acme"):
        line = logs.TextFormatter("dunning-svc").format(record)
    assert " dunning-svc INFO svc.x: paid by <email> [tenant=acme]" in line


async def test_a_requests_lines_carry_its_tenant(settings_factory, lines: io.StringIO) -> None:
    router = APIRouter(prefix="/v1/echo")

    @router.get("")
    async def echo(tenant: Tenant) -> dict[str, str]:
        log.info("echo asked")
        return {"tenant": tenant}

    app = create_app(ledger_spec(router), settings_factory("ledger-svc"))
    # A real server: each request runs in its own task, as in production.
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        for key, tenant in (("acme-key", "acme"), ("globex-key", "globex")):
            answer = await client.get("/v1/echo", headers={"Authorization": f"Bearer {key}"})
            assert answer.json() == {"tenant": tenant}
    asked = [r for r in records(lines) if r["message"] == "echo asked"]
    assert [(r["tenant"], r["service"]) for r in asked] == [
        ("acme", "ledger-svc"),
        ("globex", "ledger-svc"),
    ]


async def test_a_consumers_lines_carry_the_events_tenant(settings_factory, lines) -> None:
    _settings, database, bus = await setup(settings_factory)

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        log.info("applying %s", envelope.type)
        await ledger.apply_event(session, envelope)

    await bus.publish(
        [message(overdue("acc-1", 1, tenant="acme")), message(overdue("acc-2", 1, tenant="globex"))]
    )
    consumer = EventConsumer(bus, database, Subscription("ledger", (topics.INVOICES,), handler))
    try:
        await run_until(consumer, database, 2)
    finally:
        await bus.close()
        await database.dispose()
    applying = [r for r in records(lines) if r["message"].startswith("applying")]
    assert sorted(r["tenant"] for r in applying) == ["acme", "globex"]
