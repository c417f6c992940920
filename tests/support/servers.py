"""Real servers for tests: skip locally when absent, fail under CI.

``.ci/run`` starts Kafka and PostgreSQL before ``make test``; there a missing
server is a broken CI, not a reason to skip (``CI=true`` turns the skip into a
failure).
"""

from __future__ import annotations

import os
import socket

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
