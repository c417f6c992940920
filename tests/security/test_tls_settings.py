"""TLS settings are checked at start-up: a half-configured encrypted connection stops the
service with a message naming the variables, before it sends anything in the clear."""

from __future__ import annotations

import os
import ssl

import pytest

from dunning_runtime.settings import load_settings
from dunning_runtime.tls import database_ssl, kafka_client_options

KAFKA = "kafka://broker.example:9095"
POSTGRES = "postgresql+asyncpg://svc:pw@db.example/dunning"


@pytest.fixture(autouse=True)
def no_dunning_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test sets: the CI run on Kafka + PostgreSQL sets DUNNING_ variables."""
    for name in list(os.environ):
        if name.startswith("DUNNING_"):
            monkeypatch.delenv(name)


def refusal(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """The message a service stops with under ``env`` (DUNNING_ names without the prefix)."""
    for name, value in env.items():
        monkeypatch.setenv(f"DUNNING_{name.upper()}", value)
    with pytest.raises(SystemExit) as stopped:
        load_settings("invoice-svc")
    return str(stopped.value.code)


def test_sasl_ssl_needs_a_user_and_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(
        monkeypatch, bus_url=KAFKA, kafka_security_protocol="SASL_SSL", kafka_username="svc"
    )
    assert "DUNNING_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs DUNNING_KAFKA_USERNAME" in message
    assert "DUNNING_KAFKA_PASSWORD" in message


def test_a_kafka_login_without_tls_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(
        monkeypatch, bus_url=KAFKA, kafka_username="svc", kafka_password="s3cret-value"
    )
    assert "SASL without TLS is refused" in message
    assert "s3cret-value" not in message


def test_a_missing_ca_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(
        monkeypatch,
        bus_url=KAFKA,
        kafka_security_protocol="SSL",
        kafka_ca_file="/nowhere/ca.crt",
        database_url=POSTGRES,
        database_ssl_mode="verify-full",
        database_ssl_ca_file="/nowhere/db-ca.crt",
    )
    assert "DUNNING_KAFKA_CA_FILE: Value error, no such file: /nowhere/ca.crt" in message
    assert "DUNNING_DATABASE_SSL_CA_FILE: Value error, no such file: /nowhere/db-ca.crt" in message


def test_tls_options_in_the_database_url_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLAlchemy would hand them to asyncpg as unknown arguments: say what to set instead.
    message = refusal(monkeypatch, database_url=POSTGRES + "?sslmode=verify-full&sslrootcert=x")
    assert "sslmode, sslrootcert in the URL is refused" in message
    assert "set DUNNING_DATABASE_SSL_MODE and DUNNING_DATABASE_SSL_CA_FILE instead" in message


def test_database_tls_settings_need_postgresql_and_a_verifying_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "applies to PostgreSQL only" in refusal(monkeypatch, database_ssl_mode="require")
    message = refusal(
        monkeypatch,
        database_url=POSTGRES,
        database_ssl_mode="require",
        database_ssl_ca_file=__file__,  # a file that exists
    )
    assert "DUNNING_DATABASE_SSL_CA_FILE needs DUNNING_DATABASE_SSL_MODE=verify-full" in message


def test_verify_full_checks_certificate_and_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUNNING_DATABASE_URL", POSTGRES)
    monkeypatch.setenv("DUNNING_BUS_URL", KAFKA)
    monkeypatch.setenv("DUNNING_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DUNNING_KAFKA_USERNAME", "svc")
    monkeypatch.setenv("DUNNING_KAFKA_PASSWORD", "pw")
    for mode, certificate, host_name in (
        ("verify-full", True, True),
        ("verify-ca", True, False),
        ("require", False, False),
    ):
        monkeypatch.setenv("DUNNING_DATABASE_SSL_MODE", mode)
        context = database_ssl(load_settings("invoice-svc"))
        assert isinstance(context, ssl.SSLContext)
        assert (context.verify_mode == ssl.CERT_REQUIRED) is certificate, mode
        assert context.check_hostname is host_name, mode
    options = kafka_client_options(load_settings("invoice-svc"))
    # Kafka over TLS always verifies the broker's certificate and host name.
    assert options["ssl_context"].check_hostname is True
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    monkeypatch.setenv("DUNNING_DATABASE_SSL_MODE", "disable")
    assert database_ssl(load_settings("invoice-svc")) is False
