"""SMTP connections kept open and reused: one pool per server (host, port, security,
user), as many as there are sends at once (``delivery_concurrency``), no more: a send
never waits for a connection, so its lease covers its SMTP conversation as before.

Opening a connection (TCP, EHLO, STARTTLS, AUTH) cost more than the mail it carried,
so a connection goes back to the pool after a send that went through and is reused
by the next. It is closed instead, and the next send opens a fresh one:

* after any failure on it (an SMTP error reply, a timeout, a dropped connection):
  the state a failure leaves the session in is not worth guessing;
* when it has been idle longer than ``smtp_idle_s`` (servers drop idle clients, RFC
  5321 lets them after five minutes; a connection found closed is not reused either);
* when the service stops (``close``), with QUIT.

A reused connection the server has closed meanwhile fails at MAIL FROM, before any
of the message went out: the send is repeated at once on a fresh connection, so a
server closing idle connections costs no attempt and sends nothing twice. A failure
later in the conversation is the channel's ``TemporaryFailure``, as on a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message

from notify_svc.channels import Outgoing
from notify_svc.channels.mime import build_message
from notify_svc.settings import NotifySettings

#: How long QUIT may take when the service stops, per connection.
QUIT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to connect: the key of a pool."""

    hostname: str
    port: int
    implicit_tls: bool
    start_tls: bool | None
    username: str | None

    @classmethod
    def of(cls, settings: NotifySettings) -> SmtpServer:
        """The server ``smtp_url`` names, with the security and user the settings give."""
        url = urlsplit(settings.smtp_url)
        implicit_tls = url.scheme == "smtps"
        start_tls: bool | None = {"auto": None, "required": True, "off": False}[
            settings.smtp_starttls
        ]
        return cls(
            hostname=url.hostname or "localhost",
            port=url.port or (465 if implicit_tls else 25),
            implicit_tls=implicit_tls,
            start_tls=False if implicit_tls else start_tls,
            username=unquote(url.username or "") or settings.smtp_username or None,
        )


class _Stale(Exception):
    """A reused connection turned out closed before anything was sent on it."""


@dataclass
class _Idle:
    client: aiosmtplib.SMTP
    since: float
    generation: int


class SmtpConnections:
    """A pool of open connections to one SMTP server; ``send`` hands over one message."""

    def __init__(self, settings: NotifySettings) -> None:
        self.server = SmtpServer.of(settings)
        url = urlsplit(settings.smtp_url)
        password = unquote(url.password or "") or settings.smtp_password.get_secret_value()
        self._password = password or None
        self._timeout = settings.smtp_timeout_s
        self._validate_certs = settings.smtp_validate_certs
        self._idle_s = settings.smtp_idle_s
        self._idle: list[_Idle] = []
        #: Bumped by ``close``: a connection taken before it is not put back after it.
        self._generation = 0
        #: Connections opened so far (the tests and the docs count reuse with it).
        self.opened = 0

    async def send(self, message: Outgoing, data: bytes | None) -> None:
        """Send ``message`` on a pooled connection, as ``data`` (``mime.smtp_bytes``) when
        given and the server takes 8-bit bodies; aiosmtplib's exceptions go through."""
        generation = self._generation
        client, reused = self._take(), True
        if client is None:
            client, reused = await self._open(), False
        try:
            try:
                await _transmit(client, message, data, reused=reused)
            except _Stale:
                _drop(client)
                client = await self._open()
                await _transmit(client, message, data, reused=False)
        except BaseException:
            _drop(client)
            raise
        if generation == self._generation and client.is_connected:
            self._idle.append(_Idle(client, time.monotonic(), generation))
        else:
            _drop(client)

    async def close(self) -> None:
        """QUIT every idle connection; those in use are closed when their send ends."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for entry in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(entry.client.quit(), QUIT_TIMEOUT_S)
            _drop(entry.client)

    def _take(self) -> aiosmtplib.SMTP | None:
        """The most recently used idle connection still open and not idle too long."""
        now = time.monotonic()
        while self._idle:
            entry = self._idle.pop()
            if entry.client.is_connected and now - entry.since <= self._idle_s:
                return entry.client
            _drop(entry.client)
        return None

    async def _open(self) -> aiosmtplib.SMTP:
        server = self.server
        client = aiosmtplib.SMTP(
            hostname=server.hostname,
            port=server.port,
            username=server.username,
            password=self._password,
            use_tls=server.implicit_tls,
            start_tls=server.start_tls,
            timeout=self._timeout,
            validate_certs=self._validate_certs,
        )
        await client.connect()
        self.opened += 1
        return client


async def _transmit(
    client: aiosmtplib.SMTP, message: Outgoing, data: bytes | None, *, reused: bool
) -> None:
    """One mail transaction, as ``aiosmtplib.send`` would run it: the message written
    directly (``data``) where it can be, else by the ``email`` package."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
    eight_bit = client.supports_extension("8BITMIME")
    if data is not None and eight_bit:
        sender, recipients, utf8 = message.sender, [message.to, *message.cc], False
    else:
        mail = build_message(message)
        sender = extract_sender(mail) or ""
        recipients = extract_recipients(mail)
        utf8 = not (sender + "".join(recipients)).isascii()
        data = flatten_message(mail, utf8=utf8, cte_type="8bit" if eight_bit else "7bit")
    options = []
    if utf8:
        if not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported(
                "An address containing non-ASCII characters was provided, but SMTPUTF8 is "
                "not supported by this server"
            )
        options.append("SMTPUTF8")
    if eight_bit:
        options.append("BODY=8BITMIME")
    await _mail_transaction(client, sender, recipients, data, options, reused=reused)


async def _mail_transaction(
    client: aiosmtplib.SMTP,
    sender: str,
    recipients: list[str],
    data: bytes,
    options: list[str],
    *,
    reused: bool,
) -> None:
    """``SMTP.sendmail`` in its steps, so that a reused connection found closed at MAIL
    FROM (nothing sent yet) is told apart from a failure later on."""
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    sender = aiosmtplib.email.parse_address(sender)
    for recipient in recipients:
        aiosmtplib.email.parse_address(recipient)
    if client.supports_extension("size"):
        options = [f"size={len(data)}", *options]
    try:
        await client.mail(sender, options=options, encoding=encoding)
    except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
        if reused:
            raise _Stale from exc
        raise
    except aiosmtplib.SMTPResponseException as exc:
        if reused and exc.code == 421:  # "closing transmission channel"
            raise _Stale from exc
        await _reset(client)
        raise
    try:
        refused = []
        for recipient in recipients:
            try:
                await client.rcpt(recipient, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused.append(exc)
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(refused)
        await client.data(data)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        await _reset(client)
        raise


async def _reset(client: aiosmtplib.SMTP) -> None:
    # As sendmail does after an error reply; the connection is dropped after it anyway.
    with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
        await client.rset()


def _drop(client: aiosmtplib.SMTP) -> None:
    """Close without a word to the server (it failed, or went quiet)."""
    with contextlib.suppress(Exception):
        client.close()
