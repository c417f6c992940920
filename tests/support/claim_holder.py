"""A child process that holds claims, as a service instance does in the middle of its work.

``python -m tests.support.claim_holder SERVICE KEY BODY_JSON`` migrates SERVICE's
database the way the service does, takes its liveness lock, claims the
Idempotency-Key KEY of tenant ``acme`` for ``POST /v1/invoices`` with BODY_JSON
(as a request in flight would), writes three outbox rows, takes the outbox relay's
lease, prints ``ready`` and hangs: the test SIGKILLs it like a crashed instance.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from dunning_runtime import idempotency
from dunning_runtime.app import ServiceSpec
from dunning_runtime.db import Database
from dunning_runtime.liveness import Liveness
from dunning_runtime.outbox import Outbox, OutboxRelay
from dunning_runtime.settings import load_settings
from tests.support.events import overdue


async def main(service: str, key: str, body: str) -> None:
    spec = _spec(service)
    settings = load_settings(spec)
    database = Database.from_settings(settings)
    await database.migrate(spec.versions)
    liveness = Liveness(database, spec.name)
    await liveness.start()
    fingerprint = idempotency.request_hash("POST", "/v1/invoices", "", body.encode())
    async with database.transaction() as session:
        await idempotency.claim(session, "acme", key, fingerprint, datetime.now(UTC), liveness)
    outbox = Outbox()
    async with database.transaction() as session:
        await outbox.add(session, *(overdue("acc-held", seq) for seq in range(1, 4)))
    relay = OutboxRelay(database, _NoBus(), outbox, service=spec.name, liveness=liveness)  # type: ignore[arg-type]
    assert await relay._hold_lease()
    print("ready", flush=True)
    await asyncio.Event().wait()


class _NoBus:
    """The holder never publishes: it dies holding the lease."""


def _spec(service: str) -> ServiceSpec:
    from invoice_svc.main import SPEC

    assert service == SPEC.name
    return SPEC


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
