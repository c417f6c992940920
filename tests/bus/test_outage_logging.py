"""While the broker is away the log says so once, not ~100 times a second."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from dunning_runtime.bus import KafkaBus
from dunning_runtime.bus.kafka import BROKER
from dunning_runtime.errors import Outage


class Collect(logging.Handler):
    """What the application's own (root) handlers receive. pytest's caplog cannot tell:
    it also hooks loggers that do not propagate."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root_records() -> Iterator[list[logging.LogRecord]]:
    handler = Collect()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_dead_broker_is_one_line_until_it_is_back(
    root_records: list[logging.LogRecord],
) -> None:
    BROKER.recovered()  # a clean slate: the tracker is per process
    bus = KafkaBus([f"127.0.0.1:{closed_port()}"])
    try:
        for _ in range(5):
            with pytest.raises(Exception):  # noqa: B017 - whatever aiokafka raises
                await bus.ping()
    finally:
        await bus.close()
    # aiokafka's own per-attempt lines do not reach the application's handlers.
    assert not [r for r in root_records if r.name.startswith("aiokafka")]
    began = [r for r in root_records if "kafka broker: outage began" in r.getMessage()]
    assert len(began) == 1, [r.getMessage() for r in root_records]
    BROKER.recovered()
    over = [r for r in root_records if "kafka broker: outage over" in r.getMessage()]
    assert len(over) == 1


def test_aiokafka_connection_noise_becomes_the_broker_outage(
    root_records: list[logging.LogRecord],
) -> None:
    BROKER.recovered()
    noisy = logging.getLogger("aiokafka.client")
    for _ in range(100):
        noisy.error("Unable connect to node with id 1: [Errno 111] Connect call failed")
    logging.getLogger("aiokafka.consumer.group_coordinator").warning("NodeNotReadyError: 1")
    # Other aiokafka messages still reach the log, through the adapter's logger.
    logging.getLogger("aiokafka.consumer.consumer").warning("something else entirely")
    lines = [r.getMessage() for r in root_records]
    assert [line for line in lines if "outage began" in line] == [
        "kafka broker: outage began: Unable connect to node with id 1: "
        "[Errno 111] Connect call failed"
    ]
    assert "aiokafka: something else entirely" in lines
    assert len(lines) == 2
    BROKER.recovered()


def test_outage_ignores_an_attempt_that_began_before_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    outage = Outage("component", logging.getLogger("test.outage"))
    import time

    before = time.monotonic()
    outage.failed(ConnectionRefusedError("refused"))
    outage.failed(ConnectionRefusedError("refused again"))
    outage.recovered(attempt_began=before)  # an older attempt finishing proves nothing
    assert outage.down
    outage.recovered(attempt_began=time.monotonic())
    assert not outage.down
    assert [r.getMessage().split(":")[1].strip() for r in caplog.records] == [
        "outage began",
        "outage over after 0.0 s (cause was",
    ]
