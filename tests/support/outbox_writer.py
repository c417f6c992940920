"""A child process that writes outbox rows and then "dies" at a chosen point.

``python -m tests.support.outbox_writer MODE``:

* ``commit``: commit a state change with its outbox rows, print ``ready``, and
  hang before any relay runs (the test SIGKILLs it: crash after commit,
  before publish);
* ``publish``: run the relay on the pending rows with a bus that prints
  ``ready`` once the publish returned and then hangs, so the rows are never
  deleted (crash after publish, before the outbox is cleared).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from dunning_runtime.bus import create_bus
from dunning_runtime.bus.port import Bus, OutgoingMessage
from dunning_runtime.db import Database
from dunning_runtime.outbox import Outbox, OutboxRelay
from dunning_runtime.settings import ServiceSettings
from tests.support import ledger
from tests.support.events import overdue


class PublishThenHang:
    """Wraps a bus: publishes for real, then never returns."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        await self.bus.publish(messages)
        print("ready", flush=True)
        await asyncio.Event().wait()


async def main(mode: str) -> None:
    settings = ServiceSettings(service_name="ledger")
    database = Database.from_settings(settings)
    await database.migrate(ledger.VERSIONS)
    outbox = Outbox()
    if mode == "commit":
        async with database.transaction() as session:
            await outbox.add(session, *(overdue("acc-out", seq) for seq in range(1, 4)))
        print("ready", flush=True)
        await asyncio.Event().wait()
    bus = create_bus(settings)
    await bus.start()
    relay = OutboxRelay(database, PublishThenHang(bus), outbox, service="ledger")  # type: ignore[arg-type]
    await relay.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
