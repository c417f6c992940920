"""A real SMTP server (aiosmtpd) on a free local port that records every message.

It runs in its own thread with its own event loop, so sync tests, async tests
and child processes (notify-svc started as an OS process) can all reach it:

    with MailServer() as mail:
        env["DUNNING_SMTP_URL"] = mail.url
        ...
        mail.wait_for_count(3)
        assert [m.subject for m in mail.messages_to("ap@acme.example")] == [...]
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage = field(repr=False)

    @property
    def message_id(self) -> str:
        """The Message-ID header (notify-svc makes it stable per notice)."""
        return str(self.message.get("Message-ID", ""))

    @property
    def subject(self) -> str:
        """The decoded Subject header."""
        return str(self.message.get("Subject", ""))

    @property
    def to(self) -> str:
        """The To header as written (the envelope recipients are ``rcpt_tos``)."""
        return str(self.message.get("To", ""))

    @property
    def headers(self) -> dict[str, str]:
        """Every header, decoded (the last one wins when a name repeats)."""
        return {name: str(value) for name, value in self.message.items()}

    @property
    def body(self) -> str:
        """The plain-text body (the text/plain part of a multipart message)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = part.get_content()
        return content if isinstance(content, str) else content.decode()


class _Recorder:
    """aiosmtpd handler: keeps every message, wakes the waiters."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(str(r) for r in envelope.rcpt_tos),
            message=message,
        )
        with self.changed:
            self.messages.append(mail)
            self.changed.notify_all()
        return "250 Message accepted for delivery"


class MailServer:
    """A recording SMTP server on 127.0.0.1 and a free port; a context manager."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._recorder = _Recorder()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        """The value for ``DUNNING_SMTP_URL`` (plain SMTP, no STARTTLS offered)."""
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> MailServer:
        """Bind a free port and serve in a background thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = int(sock.getsockname()[1])
        loop = asyncio.new_event_loop()
        self._loop = loop
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)

            def protocol() -> SMTP:
                return SMTP(self._recorder, hostname="mail.test", loop=loop)

            self._server = loop.run_until_complete(loop.create_server(protocol, sock=sock))
            started.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=serve, name=f"smtp-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the SMTP server did not start within 10 s")
        return self

    def stop(self) -> None:
        """Stop serving; the recorded messages stay readable."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def messages(self) -> list[ReceivedMail]:
        """Every message received so far, in arrival order (a copy)."""
        with self._recorder.changed:
            return list(self._recorder.messages)

    def messages_to(self, address: str) -> list[ReceivedMail]:
        """The messages whose envelope recipients include ``address`` (case-insensitive)."""
        wanted = address.lower()
        return [m for m in self.messages if wanted in (r.lower() for r in m.rcpt_tos)]

    def wait_for_count(
        self, count: int, *, to: str | None = None, timeout_s: float = 30.0
    ) -> list[ReceivedMail]:
        """Block until at least ``count`` messages (to ``to``, if given) arrived; return them.

        Raises ``TimeoutError`` naming what arrived after ``timeout_s``. Usable from
        async tests through ``asyncio.to_thread`` or ``wait_for_count_async``.
        """

        def selected() -> list[ReceivedMail]:
            found = self._recorder.messages
            if to is not None:
                found = [m for m in found if to.lower() in (r.lower() for r in m.rcpt_tos)]
            return list(found)

        deadline = time.monotonic() + timeout_s
        with self._recorder.changed:
            while len(found := selected()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    subjects = [m.subject for m in found]
                    raise TimeoutError(
                        f"expected {count} message(s){f' to {to}' if to else ''} within "
                        f"{timeout_s} s, got {len(found)}: {subjects}"
                    )
                self._recorder.changed.wait(left)
        return found

    async def wait_for_count_async(self, count: int, **options: Any) -> list[ReceivedMail]:
        """``wait_for_count`` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_for_count, count, **options)
