"""The channels a notice goes out on, each a small adapter behind one interface.

``Channel.send(message)`` delivers one ``Outgoing`` message and returns a
``Receipt``, or raises ``TemporaryFailure`` (worth retrying: SMTP 4xx, HTTP 5xx,
timeouts, refused connections) or ``PermanentFailure`` (SMTP 5xx, HTTP 4xx, an
invalid address). Retries, leases and bookkeeping live in ``delivery``; a channel
only speaks its protocol. ``task`` is the one channel that never leaves the
database (``channels.task``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Outgoing:
    """One rendered notice, ready for its channel."""

    tenant: str
    notification_id: str
    channel: str
    to: str
    subject: str
    text: str
    html: str
    sms: str
    message_id: str
    sender: str
    date: datetime
    cc: tuple[str, ...] = ()
    reply_to: str | None = None
    #: The webhook body: the notice as data (the request and what was rendered).
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """What the provider said when it accepted the message."""

    provider_message_id: str | None = None


class DeliveryFailure(Exception):
    """A send that did not go through; ``str()`` says why, for people."""


class TemporaryFailure(DeliveryFailure):
    """The provider may accept it later: retry with backoff."""


class PermanentFailure(DeliveryFailure):
    """Retrying cannot help."""


class Channel(Protocol):
    """Delivers messages of one kind."""

    name: str

    async def send(self, message: Outgoing) -> Receipt:
        """Deliver ``message``; raise ``TemporaryFailure`` or ``PermanentFailure``."""
        ...


def http_failure(status: int, detail: str) -> DeliveryFailure:
    """The failure an HTTP answer means: 408, 425, 429 and 5xx are temporary, any other
    4xx is permanent."""
    text = f"answered {status}" + (f": {detail[:300]}" if detail else "")
    if status >= 500 or status in (408, 425, 429):
        return TemporaryFailure(text)
    return PermanentFailure(text)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        Path(temporary).replace(path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        raise


async def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, then a rename), off the
    event loop; an ``OSError`` is a ``TemporaryFailure`` (a full disk may be freed)."""
    try:
        await asyncio.to_thread(_write, path, data)
    except OSError as exc:
        raise TemporaryFailure(f"cannot write {path}: {exc}") from exc
