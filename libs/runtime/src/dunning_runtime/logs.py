"""Log records as one JSON object per line (or text for people), with trace and tenant.

``DUNNING_LOG_FORMAT=json`` (the default) writes each record as one line with ``time``,
``level``, ``service``, ``logger``, ``message``, and when known ``trace_id`` and
``span_id`` (the current OpenTelemetry span's, so a line leads to its trace) and
``tenant``; an exception adds ``exception``. ``text`` writes the same fields as a line
for a terminal. docs/metrics.md ("Logs") describes both.

The tenant is a context variable: the request's authentication sets it
(``auth.tenant_of``), a consumer sets it for each event or chunk of one tenant. The
service is one too, set as a service starts and for each of its requests, so several
services in one process (tests) still name their own lines.

No personal data: services log ids, never addresses or names, and as a safety net both
formats mask anything shaped like an email address or an international phone number
(a provider's error message may quote the recipient).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import unquote

from opentelemetry import trace

#: The tenant the current request or event belongs to (None: not known or several).
TENANT: ContextVar[str | None] = ContextVar("dunning_tenant", default=None)
#: The service the current task works for (None: the one logging was set up with).
SERVICE: ContextVar[str | None] = ContextVar("dunning_service", default=None)

LogFormat = Literal["json", "text"]

#: Loggers of libraries that log the data they carry, which no mask can recognise (a
#: contact's name): aiosqlite logs every statement with its parameters at DEBUG, so
#: ``DUNNING_LOG_LEVEL=DEBUG`` wrote contact names into the log; SQLAlchemy's engine would
#: at INFO (it holds itself at WARN unless someone lowers it); aiosmtplib the SMTP
#: conversation; aiokafka every record it sends, at DEBUG (a key event's hash). Kept at
#: WARNING whatever ``DUNNING_LOG_LEVEL`` says.
DATA_LOGGERS = ("aiosqlite", "sqlalchemy.engine", "sqlalchemy.pool", "aiosmtplib", "aiokafka")

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d[\d ()./-]{6,}\d")


def scrub(text: str) -> str:
    """``text`` with email addresses and phone numbers masked, also percent-encoded ones
    (an access log line or a span's URL quotes ``/v1/contacts/%2B4915...``)."""
    masked = _mask(text)
    if "%" in masked:
        decoded = unquote(masked)
        if decoded != masked and _mask(decoded) != decoded:
            return _mask(decoded)
    return masked


def _mask(text: str) -> str:
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    if "+" in text:
        text = _PHONE.sub("<phone>", text)
    return text


@contextmanager
def tenant_context(tenant: str | None) -> Iterator[None]:
    """Lines logged inside the block carry ``tenant``."""
    token = TENANT.set(tenant)
    try:
        yield
    finally:
        TENANT.reset(token)


def _fields(record: logging.LogRecord, service: str) -> dict[str, str]:
    """What every line says besides the message, in order; unknown fields left out."""
    fields = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "service": SERVICE.get() or service,
        "logger": record.name,
    }
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        fields["trace_id"] = format(context.trace_id, "032x")
        fields["span_id"] = format(context.span_id, "016x")
    tenant = TENANT.get()
    if tenant is not None:
        fields["tenant"] = tenant
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module's docstring for the fields)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, str] = _fields(record, self.service)
        entry["message"] = scrub(record.getMessage())
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = scrub(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time service LEVEL logger: message [tenant=… trace=…]`` for a terminal."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as text, its traceback on the lines after."""
        fields = _fields(record, self.service)
        extra = " ".join(
            f"{name}={fields[key]}"
            for name, key in (("tenant", "tenant"), ("trace", "trace_id"))
            if key in fields
        )
        line = (
            f"{fields['time']} {fields['service']} {fields['level']} {fields['logger']}: "
            f"{scrub(record.getMessage())}" + (f" [{extra}]" if extra else "")
        )
        if record.exc_info:
            line += "\n" + scrub(self.formatException(record.exc_info))
        return line


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The platform's handler on the root logger (recognised so set-up is idempotent)."""


def setup_logging(service: str, level: str, log_format: LogFormat) -> None:
    """Send every logger's records to stderr in ``log_format`` at ``level`` and above.

    Replaces our own handler if set up before (a second service in one process keeps
    the first's handler: each line's service comes from ``SERVICE`` where it is set).
    uvicorn's loggers propagate to it (``serve`` passes uvicorn no logging config).
    """
    root = logging.getLogger()
    if any(isinstance(h, _Handler) for h in root.handlers):
        return
    handler = _Handler()
    formatter: logging.Formatter = (
        JsonFormatter(service) if log_format == "json" else TextFormatter(service)
    )
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
    # Alembic narrates every plugin it loads at INFO; only its warnings help an operator.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in DATA_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
