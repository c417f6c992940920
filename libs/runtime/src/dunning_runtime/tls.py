"""Encrypted connections: the TLS contexts and client options of Kafka and PostgreSQL,
made from the settings (``DUNNING_KAFKA_*``, ``DUNNING_DATABASE_SSL_*``).

Every client of the platform (the services, the ``dunning`` command, the benchmarks, the
test helpers) takes its options from here, so one set of settings means the same thing
everywhere.
"""

from __future__ import annotations

import ssl
from typing import Any

from dunning_runtime.settings import ServiceSettings


def tls_context(
    *,
    ca_file: str = "",
    cert_file: str = "",
    key_file: str = "",
    verify_certificate: bool = True,
    verify_host_name: bool = True,
) -> ssl.SSLContext:
    """A client TLS context (TLS 1.2 or newer): trusts ``ca_file`` (or the system's CAs),
    presents ``cert_file``/``key_file`` when given (mutual TLS)."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify_certificate:
        # libpq's sslmode=require: encrypted, but any certificate is accepted.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif not verify_host_name:
        context.check_hostname = False
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def kafka_client_options(settings: ServiceSettings) -> dict[str, Any]:
    """Keyword arguments for every aiokafka client (producer, consumer, admin): empty on
    PLAINTEXT; a TLS context that verifies the broker's certificate and host name on SSL
    and SASL_SSL; and the SASL login on SASL_SSL."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {
        "security_protocol": protocol,
        "ssl_context": tls_context(
            ca_file=settings.kafka_ca_file,
            cert_file=settings.kafka_cert_file,
            key_file=settings.kafka_key_file,
        ),
    }
    if protocol == "SASL_SSL":
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_username,
            sasl_plain_password=settings.kafka_password.get_secret_value(),
        )
    return options


def database_ssl(settings: ServiceSettings) -> ssl.SSLContext | bool | None:
    """asyncpg's ``ssl`` argument for ``DUNNING_DATABASE_SSL_MODE``: None leaves the
    driver's default (TLS when offered, unchecked), False turns TLS off, and a context
    requires TLS, checking the certificate (verify-ca) and the host name (verify-full)."""
    mode = settings.database_ssl_mode
    if not mode:
        return None
    if mode == "disable":
        return False
    return tls_context(
        ca_file=settings.database_ssl_ca_file,
        cert_file=settings.database_ssl_cert_file,
        key_file=settings.database_ssl_key_file,
        verify_certificate=mode in ("verify-ca", "verify-full"),
        verify_host_name=mode == "verify-full",
    )
