"""SMTP with STARTTLS and authentication against a real aiosmtpd server that demands
both, and the permanent failures of a server that refuses either."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from notify_fixtures import publish, settled, smtp_server, three_invoices
from pydantic import SecretStr

from dunning_runtime.app import create_app
from notify_svc.main import SPEC
from tests.support.fixtures import ADMIN, running


def tls_context(folder: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=smtp.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"notify", b"s3cret")
    return AuthResult(success=ok, handled=False)  # a failure answers 535


async def deliver(settings: Any, notification_id: str) -> dict[str, Any]:
    async with running(create_app(SPEC, settings)) as client:
        await client.put("/v1/admin/clock", json={"now": "2026-03-15T09:00:00Z"}, headers=ADMIN)
        await publish(settings, three_invoices("en", notification_id=notification_id))
        return await settled(client, notification_id)


async def test_mail_goes_over_starttls_with_login(notify_settings: Any, tmp_path: Path) -> None:
    context = tls_context(tmp_path)
    async with smtp_server(
        tls_context=context, require_starttls=True, auth_required=True, authenticator=authenticator
    ) as server:
        url = f"smtp://notify:s3cret@127.0.0.1:{server.port}"
        settings = notify_settings.model_copy(
            update={"smtp_url": url, "smtp_starttls": "required", "smtp_validate_certs": False}
        )
        body = await deliver(settings, "TLS-1")
        assert body["status"] == "sent", body
        assert len(server.messages) == 1
        assert server.secured == [(True, True)]  # over STARTTLS, logged in

        wrong = notify_settings.model_copy(
            update={
                "smtp_url": f"smtp://127.0.0.1:{server.port}",
                "smtp_username": "notify",
                "smtp_password": SecretStr("wrong"),
                "smtp_starttls": "required",
                "smtp_validate_certs": False,
            }
        )
        refused = await deliver(wrong, "TLS-2")
    assert (refused["status"], refused["permanent"], refused["attempts"]) == ("failed", True, 1)
    assert "535" in refused["error"]


async def test_starttls_required_but_not_offered_is_permanent(notify_settings: Any) -> None:
    async with smtp_server() as server:
        settings = notify_settings.model_copy(
            update={"smtp_url": f"smtp://127.0.0.1:{server.port}", "smtp_starttls": "required"}
        )
        body = await deliver(settings, "TLS-3")
        assert server.messages == []
    assert body["status"] == "failed" and body["permanent"] is True
    assert "STARTTLS" in body["error"] or "starttls" in body["error"].lower()
