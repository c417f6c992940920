"""The email written directly (``channels.mime.smtp_bytes``) is the message the
``email`` package writes (``build_message`` flattened as aiosmtplib does for a server
with 8BITMIME): byte for byte but for the MIME boundary, except a non-ASCII or long
Subject, which is encoded differently and decodes to the same text. Anything outside
the common case falls back to the package."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import formataddr
from typing import Any

import pytest
from aiosmtplib.email import flatten_message

from notify_svc.channels import Outgoing, PermanentFailure
from notify_svc.channels.mime import build_message, smtp_bytes

LONG = "Sehr geehrte Damen und Herren, bitte begleichen Sie die offenen Posten. " * 4


def notice(**changes: Any) -> Outgoing:
    fields: dict[str, Any] = {
        "tenant": "acme",
        "notification_id": "NTF-1",
        "channel": "email",
        "to": "ap@acme.example",
        "subject": "Payment reminder",
        "text": "Dear Dana,\n\nplease pay.\n",
        "html": "<p>Please pay.</p>",
        "sms": "",
        "message_id": "<ntf.0123abcd@dunning.invalid>",
        "sender": "Accounts Receivable <receivables@dunning.invalid>",
        "date": datetime(2026, 3, 15, 9, tzinfo=UTC),
    }
    return Outgoing(**{**fields, **changes})


CASES = {
    "ascii": notice(),
    "german": notice(
        subject="Zahlungserinnerung: 3 überfällige Rechnungen (4.230,50\xa0€)",
        text="Guten Tag Dana Fischer,\n\n- Rechnung 2026-1001: 1.250,00\xa0€\n\nMit freundlichen Grüßen",
        html="<p>Überfällig insgesamt: <b>4.230,50\xa0€</b></p>\n",
        sender=formataddr(("Müller & Söhne GmbH", "receivables@dunning.invalid")),
        cc=("buchhaltung@acme.example", "dana.fischer@acme.example"),
        reply_to="ar@mueller.example",
    ),
    "quoted_name": notice(sender=formataddr(('ACME, Inc. "West"', "r@acme.example"))),
    "long_lines": notice(text=LONG + "\n" + LONG, html="<table>" + "<td>x</td>" * 40 + "</table>"),
    "long_non_ascii_lines": notice(
        text=("überfällig " * 20 + "\n") * 12, html=("<td>€ 1.250,00</td>" * 20 + "\n") * 3
    ),
    "line_ends": notice(text="a\r\nb\rc\n\n\nd", html="x\r\n"),
    "empty": notice(subject="", text="", html=""),
    "long_ascii_subject": notice(subject="Reminder " * 12),
    "long_non_ascii_subject": notice(subject="Überfällig: " * 12),
    "offset_date": notice(date=datetime(2026, 3, 15, 9, tzinfo=timezone(timedelta(hours=2)))),
}


def old_bytes(message: Outgoing) -> bytes:
    return flatten_message(build_message(message), cte_type="8bit")


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def headers(message: EmailMessage) -> list[tuple[str, str]]:
    return [
        (name, re.sub(r'boundary="[^"]+"', "boundary", str(value)))
        for name, value in message.items()
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_server_receives_the_same_message(case: str) -> None:
    message = CASES[case]
    fast, old = smtp_bytes(message), old_bytes(message)
    assert fast is not None
    new, before = parsed(fast), parsed(old)
    assert headers(new) == headers(before)
    assert new["Subject"] == message.subject  # decoded: the text as rendered
    for new_part, old_part in zip(new.walk(), before.walk(), strict=True):
        assert headers(new_part) == headers(old_part)  # type: ignore[arg-type]
        if not new_part.is_multipart():
            assert new_part.get_content() == old_part.get_content()  # type: ignore[attr-defined]
    assert [p.get_content_type() for p in new.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    if case not in ("german", "long_ascii_subject", "long_non_ascii_subject"):
        # The same bytes, but for the random boundary.
        boundary = before.get_boundary()
        assert boundary is not None
        assert smtp_bytes(message, boundary=boundary) == old


def test_every_line_is_crlf_terminated_and_short_in_the_headers() -> None:
    data = smtp_bytes(CASES["german"])
    assert data is not None
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert b"\r" not in body.replace(b"\r\n", b"") and b"\n" not in body.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    "changes",
    [
        {"to": "dana.fischer@bücher.example"},  # non-ASCII: SMTPUTF8, the package decides
        {"to": '"dana fischer"@acme.example'},  # a quoted local part
        {"cc": ("ap@[192.0.2.1]",)},  # a domain literal
        {"subject": "Reminder\r\nBcc: everyone@example.org"},  # the package refuses it
        {"message_id": "<" + "x" * 80 + "@dunning.invalid>"},  # folded by the package
        {"subject": "Mahnung =?utf-8?q?x?= 1 €"},  # read as an encoded word, as before
    ],
)
def test_anything_unusual_takes_the_email_package(changes: dict[str, Any]) -> None:
    assert smtp_bytes(notice(**changes)) is None


@pytest.mark.parametrize("sender", ["<@>", "Broken <no-at-sign", "a@b, c@d, ,"])
def test_a_from_the_package_refuses_is_refused_alike(sender: str) -> None:
    message = notice(sender=sender)
    try:
        build_message(message)
    except PermanentFailure:
        with pytest.raises(PermanentFailure):
            smtp_bytes(message)
    else:
        assert smtp_bytes(message) is not None
