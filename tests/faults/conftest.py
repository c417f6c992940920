"""The fault suite runs only when asked (``make faults``, or ``FAULTS=1 pytest tests/faults``):
it starts its own Kafka broker and PostgreSQL server, stops and restarts them, and takes
minutes, so ``make test`` leaves it out."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.harness import Servers

if os.environ.get("FAULTS") != "1":
    collect_ignore_glob = ["test_*.py"]

#: The suite's own servers, never the shared 9092/5432 ones (it stops and restarts them).
KAFKA_PORT = int(os.environ.get("FAULTS_KAFKA_PORT", "19192"))
PG_PORT = int(os.environ.get("FAULTS_PG_PORT", "15532"))


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """A Kafka broker and a PostgreSQL server of the suite's own, started by the repo's
    scripts and stopped afterwards (under CI a failure to start fails the run)."""
    own = Servers(KAFKA_PORT, PG_PORT)
    # Left running when they were up already (a second run a moment later starts faster).
    was_up = {name: own.status(name) for name in ("kafka", "postgres")}
    try:
        own.postgres("up")
        own.kafka("up")
    except AssertionError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the fault suite's servers did not start: {exc}", pytrace=False)
        pytest.skip(f"the fault suite's servers did not start: {exc}")
    yield own
    if not was_up["kafka"]:
        own.kafka("down")
    if not was_up["postgres"]:
        own.postgres("down")
