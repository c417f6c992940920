"""Real servers for tests: skip locally when absent, fail under CI.

``.ci/run`` starts Kafka and PostgreSQL before ``make test``; there a missing
server is a broken CI, not a reason to skip (``CI=true`` turns the skip into a
failure).
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

KAFKA = os.environ.get("DUNNING_TEST_KAFKA", "127.0.0.1:9092")
POSTGRES_URL = os.environ.get(
    "DUNNING_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/dunning_test"
)


def _reachable(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} — under CI a server test may not skip", pytrace=False)
    pytest.skip(reason)


def require_kafka() -> str:
    """Kafka's bootstrap address; skips (or fails under CI) when no broker answers."""
    if not _reachable(KAFKA):
        _missing(f"no Kafka broker at {KAFKA} (run `make kafka-up` or set DUNNING_TEST_KAFKA)")
    return KAFKA


def require_postgres() -> str:
    """A PostgreSQL URL; skips (or fails under CI) when the server does not answer."""
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    if not _reachable(f"{url.host or '127.0.0.1'}:{url.port or 5432}"):
        _missing(f"no PostgreSQL at {url.host}:{url.port} (run `make pg-up`)")
    return POSTGRES_URL


# The TLS side of the same servers, as scripts/kafka.sh and scripts/pg.sh start them (their
# defaults): Kafka's SASL_SSL listener on port + 3 with a SCRAM-SHA-512 user, PostgreSQL's
# TLS-only password user, both with certificates of the test CA in var/tls.
TLS_CA_FILE = os.environ.get(
    "DUNNING_TEST_TLS_CA_FILE",
    str(Path(__file__).resolve().parents[2] / "var" / "tls" / "ca.crt"),
)
KAFKA_SASL = os.environ.get("DUNNING_TEST_KAFKA_SASL", "127.0.0.1:9095")
KAFKA_SASL_USER = os.environ.get("DUNNING_TEST_KAFKA_SASL_USER", "dunning")
KAFKA_SASL_PASSWORD = os.environ.get("DUNNING_TEST_KAFKA_SASL_PASSWORD", "dunning-test-password")
POSTGRES_TLS_URL = os.environ.get(
    "DUNNING_TEST_POSTGRES_TLS_URL",
    "postgresql+asyncpg://dunning_tls:dunning-test-password@127.0.0.1:5432/dunning_test",
)


def require_kafka_sasl() -> str:
    """The SASL_SSL listener's address; skips (or fails under CI) when it or the CA is missing."""
    if not Path(TLS_CA_FILE).is_file():
        _missing(f"no test CA at {TLS_CA_FILE} (scripts/tls.sh make; DUNNING_TEST_TLS_CA_FILE)")
    if not _reachable(KAFKA_SASL):
        _missing(
            f"no Kafka SASL_SSL listener at {KAFKA_SASL} (a broker started by scripts/kafka.sh "
            "since TLS was added; or set DUNNING_TEST_KAFKA_SASL)"
        )
    return KAFKA_SASL


def _offers_tls(host: str, port: int) -> bool:
    """PostgreSQL's SSLRequest: the server answers b"S" when it speaks TLS, b"N" when not."""
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(struct.pack("!ii", 8, 80877103))
            return conn.recv(1) == b"S"
    except OSError:
        return False


def require_postgres_tls() -> str:
    """The URL of PostgreSQL's TLS-only user; skips (or fails under CI) when the server does
    not speak TLS (one started before scripts/pg.sh turned it on) or the CA is missing."""
    from sqlalchemy.engine import make_url

    if not Path(TLS_CA_FILE).is_file():
        _missing(f"no test CA at {TLS_CA_FILE} (scripts/tls.sh make; DUNNING_TEST_TLS_CA_FILE)")
    url = make_url(POSTGRES_TLS_URL)
    if not _offers_tls(url.host or "127.0.0.1", url.port or 5432):
        _missing(
            f"no PostgreSQL with TLS at {url.host}:{url.port} (restart it with scripts/pg.sh, "
            "or set DUNNING_TEST_POSTGRES_TLS_URL)"
        )
    return POSTGRES_TLS_URL
