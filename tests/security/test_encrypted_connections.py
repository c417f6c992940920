"""Encrypted connections against the real servers: Kafka's SASL_SSL listener (SCRAM-SHA-512
over TLS) and PostgreSQL with sslmode=verify-full, both with certificates of the test CA
that scripts/tls.sh makes (scripts/kafka.sh and scripts/pg.sh start them so).

A service runs end to end on them; a wrong password, a CA that did not sign the server's
certificate, and a host name the certificate was not issued for are each refused.
Locally they skip when the TLS listeners are not up; under CI=true they fail instead.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from dunning_runtime.app import create_app
from dunning_runtime.bus import create_bus
from dunning_runtime.db import Database
from dunning_runtime.settings import ServiceSettings
from dunning_runtime.tls import kafka_client_options
from tests.support import ledger
from tests.support.events import message, overdue
from tests.support.fixtures import ledger_spec, running, until
from tests.support.servers import (
    KAFKA_SASL_PASSWORD,
    KAFKA_SASL_USER,
    TLS_CA_FILE,
    require_kafka_sasl,
    require_postgres_tls,
)
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

#: Loopback, but not the address the server certificate names (127.0.0.1, localhost):
#: a forwarder there reaches the same server under a host name it was not issued for.
OTHER_LOOPBACK = "127.0.0.2"


def kafka_settings(bootstrap: str, **changes: Any) -> ServiceSettings:
    """Settings of a service on Kafka over SASL_SSL with the test CA."""
    values: dict[str, Any] = {
        "bus_url": f"kafka://{bootstrap}",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_username": KAFKA_SASL_USER,
        "kafka_password": KAFKA_SASL_PASSWORD,
        "kafka_ca_file": TLS_CA_FILE,
    }
    values.update(changes)
    return ServiceSettings(**values)


def database_settings(url: str, **changes: Any) -> ServiceSettings:
    """Settings of a service on PostgreSQL with verify-full and the test CA."""
    values: dict[str, Any] = {
        "database_url": url,
        "database_ssl_mode": "verify-full",
        "database_ssl_ca_file": TLS_CA_FILE,
    }
    values.update(changes)
    return ServiceSettings(**values)


def with_host(url: str, host: str, port: int) -> str:
    """``url`` pointing at ``host:port`` instead."""
    return make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def forwarded(host_port: str) -> AsyncIterator[int]:
    """A forwarder on ``OTHER_LOOPBACK`` to ``host_port``; yields its port."""
    host, _, port = host_port.rpartition(":")
    proxy = TcpProxy(host, int(port), listen_host=OTHER_LOOPBACK)
    await proxy.start()
    try:
        yield proxy.port
    finally:
        await proxy.stop()


async def kafka_refuses(settings: ServiceSettings) -> None:
    """Assert that a client with ``settings`` cannot start (bootstrap refused)."""
    bus = create_bus(settings)
    try:
        with pytest.raises(KafkaConnectionError):
            await bus.start()
    finally:
        await bus.close()


async def database_refuses(settings: ServiceSettings, why: str) -> None:
    """Assert that ``settings`` get no connection, and that the error says ``why``."""
    database = Database.from_settings(settings)
    try:
        with pytest.raises((DBAPIError, OSError)) as refused:
            await database.ping()
        assert why in str(refused.value).lower()
    finally:
        await database.dispose()


async def test_a_service_runs_on_sasl_ssl_kafka_and_verify_full_postgresql(tmp_path: Path) -> None:
    bootstrap = require_kafka_sasl()
    url = require_postgres_tls()
    token = "tls" + uuid.uuid4().hex[:8]
    settings = kafka_settings(
        bootstrap,
        database_url=url,
        database_ssl_mode="verify-full",
        database_ssl_ca_file=TLS_CA_FILE,
        database_schema=token,
        topic_prefix=f"{token}.",
        data_dir=tmp_path,
        service_name="ledger-svc",
    )
    database = Database.from_settings(settings)
    publisher = create_bus(settings)
    try:
        async with running(create_app(ledger_spec(), settings)) as http:
            assert (await http.get("/readyz")).status_code == 200
            await publisher.start()
            await publisher.publish([message(overdue("acc-tls", 1))])
            # Published over SASL_SSL, consumed over SASL_SSL, applied over verify-full TLS.
            await until(
                lambda: _applied(database, 1), timeout_s=30, what="the event applied over TLS"
            )
        async with database.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                )
            ).one()
        assert row.ssl is True and row.version in ("TLSv1.2", "TLSv1.3")
    finally:
        await publisher.close()
        async with database.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{token}" CASCADE'))
        await database.dispose()
        await _delete_topics(settings)


async def _applied(database: Database, count: int) -> bool:
    return await ledger.count_applied(database) == count


async def _delete_topics(settings: ServiceSettings) -> None:
    admin = AIOKafkaAdminClient(
        **kafka_client_options(settings), bootstrap_servers=",".join(settings.kafka_bootstrap)
    )
    try:
        await admin.start()
        mine = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def test_kafka_refuses_a_wrong_password() -> None:
    bootstrap = require_kafka_sasl()
    await kafka_refuses(kafka_settings(bootstrap, kafka_password="not-the-password"))


async def test_kafka_is_refused_when_its_certificate_is_not_from_a_trusted_ca() -> None:
    # No CA file: the system's CAs, none of which signed the test CA's certificate.
    bootstrap = require_kafka_sasl()
    await kafka_refuses(kafka_settings(bootstrap, kafka_ca_file=""))


async def test_kafka_is_refused_under_a_host_name_its_certificate_does_not_name() -> None:
    bootstrap = require_kafka_sasl()
    async with forwarded(bootstrap) as port:
        await kafka_refuses(kafka_settings(f"{OTHER_LOOPBACK}:{port}"))


async def test_postgresql_refuses_a_wrong_password() -> None:
    url = make_url(require_postgres_tls()).set(password="not-the-password")
    settings = database_settings(url.render_as_string(hide_password=False))
    await database_refuses(settings, "password authentication failed")


async def test_postgresql_is_refused_when_its_certificate_is_not_from_a_trusted_ca() -> None:
    url = require_postgres_tls()
    await database_refuses(database_settings(url, database_ssl_ca_file=""), "certificate verify")


async def test_verify_full_refuses_a_host_name_the_certificate_does_not_name() -> None:
    url = make_url(require_postgres_tls())
    async with forwarded(f"{url.host}:{url.port or 5432}") as port:
        elsewhere = with_host(str(url.render_as_string(hide_password=False)), OTHER_LOOPBACK, port)
        await database_refuses(database_settings(elsewhere), "mismatch, certificate is not valid")
        # The same server through the same forwarder passes verify-ca, which checks the
        # CA only: the host name is what verify-full refused.
        accepted = Database.from_settings(
            database_settings(elsewhere, database_ssl_mode="verify-ca")
        )
        try:
            await accepted.ping()
        finally:
            await accepted.dispose()
