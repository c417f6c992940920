"""Email over SMTP with aiosmtplib, or ``.eml`` files when no SMTP server is set."""

from __future__ import annotations

from pathlib import Path

import aiosmtplib

from notify_svc.channels import (
    Outgoing,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
    write_file,
)
from notify_svc.channels.mime import build_message, smtp_bytes
from notify_svc.channels.smtp import SmtpConnections

__all__ = ["EmlDirectory", "SmtpChannel", "build_message"]


class SmtpChannel:
    """Sends over SMTP: ``smtp://`` with STARTTLS as configured, ``smtps://`` with TLS,
    on the connections of ``connections`` (kept open and reused: ``channels.smtp``)."""

    name = "email"

    def __init__(self, connections: SmtpConnections) -> None:
        self.connections = connections

    async def send(self, message: Outgoing) -> Receipt:
        """Hand the message to the SMTP server; its 4xx are temporary, 5xx permanent."""
        # Written before any connection is taken: an address the email package refuses
        # fails the notice at once, whatever the server's state.
        data = smtp_bytes(message)
        if data is None:
            build_message(message)
        try:
            await self.connections.send(message, data)
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
