"""The recording SMTP server of the e2e harness, on its own (no platform needed)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from tests.support.smtp import MailServer


def _send(server: MailServer, to: str, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "ar@seller.example"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '.')}@seller.example>"
    message.set_content(f"Body of {subject}")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.send_message(message)


def test_records_each_message_with_its_headers_and_body() -> None:
    with MailServer() as server:
        _send(server, "ap@one.example", "first notice")
        _send(server, "ap@two.example", "second notice")
        assert len(server.wait_for_count(2)) == 2
        (mail,) = server.messages_to("AP@one.example")
        assert (mail.to, mail.subject, mail.message_id) == (
            "ap@one.example",
            "first notice",
            "<first.notice@seller.example>",
        )
        assert mail.body.strip() == "Body of first notice"
        assert mail.headers["From"] == "ar@seller.example"
        assert len(server.wait_for_count(1, to="ap@two.example")) == 1


async def test_waiting_for_more_than_arrived_fails_naming_what_came() -> None:
    with MailServer() as server:
        _send(server, "ap@one.example", "only notice")
        with pytest.raises(TimeoutError, match="got 1: \\['only notice'\\]"):
            await server.wait_for_count_async(2, timeout_s=0.5)
