"""Email over SMTP with aiosmtplib, or ``.eml`` files when no SMTP server is set."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib

from notify_svc.channels import (
    Outgoing,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
    write_file,
)
from notify_svc.settings import NotifySettings


def build_message(message: Outgoing) -> EmailMessage:
    """The MIME message: plain text and HTML alternatives, the stable Message-ID.

    An address the email package cannot parse is a ``PermanentFailure``.
    """
    mail = EmailMessage()
    try:
        mail["From"] = message.sender
        mail["To"] = Address(addr_spec=message.to)
        if message.cc:
            mail["Cc"] = [Address(addr_spec=a) for a in message.cc]
        if message.reply_to:
            mail["Reply-To"] = message.reply_to
    except (ValueError, IndexError) as exc:
        raise PermanentFailure(f"invalid address: {exc}") from exc
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(message.date)
    mail["Message-ID"] = message.message_id
    mail["X-Dunning-Notification-Id"] = message.notification_id
    mail.set_content(message.text)
    mail.add_alternative(message.html, subtype="html")
    return mail


class SmtpChannel:
    """Sends over SMTP: ``smtp://`` with STARTTLS as configured, ``smtps://`` with TLS."""

    name = "email"

    def __init__(self, settings: NotifySettings) -> None:
        url = urlsplit(settings.smtp_url)
        self.hostname = url.hostname or "localhost"
        self.implicit_tls = url.scheme == "smtps"
        self.port = url.port or (465 if self.implicit_tls else 25)
        self.username = unquote(url.username or "") or settings.smtp_username or None
        password = unquote(url.password or "") or settings.smtp_password.get_secret_value()
        self.password = password or None
        self.start_tls: bool | None = {"auto": None, "required": True, "off": False}[
            settings.smtp_starttls
        ]
        self.timeout = settings.smtp_timeout_s
        self.validate_certs = settings.smtp_validate_certs

    async def send(self, message: Outgoing) -> Receipt:
        """Hand the message to the SMTP server; its 4xx are temporary, 5xx permanent."""
        mail = build_message(message)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.implicit_tls,
                start_tls=False if self.implicit_tls else self.start_tls,
                timeout=self.timeout,
                validate_certs=self.validate_certs,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if all(code >= 500 for code in codes):
                raise PermanentFailure(f"recipient refused: {detail}") from exc
            raise TemporaryFailure(f"recipient deferred: {detail}") from exc
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as exc:
            raise TemporaryFailure(f"SMTP {type(exc).__name__}: {exc}") from exc
        except aiosmtplib.SMTPConnectError as exc:
            raise TemporaryFailure(f"cannot connect to SMTP server: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            failure = TemporaryFailure if 400 <= exc.code < 500 else PermanentFailure
            raise failure(f"SMTP server answered {exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPException as exc:
            # E.g. STARTTLS required but not offered: a configuration error.
            raise PermanentFailure(f"SMTP: {exc}") from exc
        except (TimeoutError, OSError) as exc:
            raise TemporaryFailure(f"SMTP connection failed: {exc}") from exc
        return Receipt(provider_message_id=message.message_id)


class EmlDirectory:
    """Writes each message as ``<data_dir>/outbox/email/<tenant>/<message id>.eml``, so
    the platform runs with no mail server; a rewrite of the same notice replaces its file."""

    name = "email"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: Outgoing) -> Receipt:
        """Write the message atomically (temporary file, then rename)."""
        mail = build_message(message)
        name = message.message_id.strip("<>").split("@")[0] + ".eml"
        await write_file(self.folder / message.tenant / name, mail.as_bytes())
        return Receipt(provider_message_id=message.message_id)
