"""What a crashed instance held is free as soon as the process is gone.

A child process claims an Idempotency-Key (a request in flight) and the outbox relay's
lease, then is SIGKILLed. Before, the ERP's retry with the same key got 409 "in use"
for up to a minute, and the restarted service published nothing until the dead
relay's 15 s lease ran out (so ``POST /v1/admin/tick`` returned before its work was
published). Now both are taken over at the first try after the kill, while a live
holder still keeps them.
"""

from __future__ import annotations

import json
from typing import Any

from dunning_runtime.app import create_app
from invoice_svc.main import SPEC
from tests.services.test_database_away import invoice
from tests.support import procs
from tests.support.fixtures import running

KEY = {"Authorization": "Bearer acme-key"}


async def test_a_killed_instances_key_and_relay_lease_are_taken_over_at_once(
    settings_factory: Any,
) -> None:
    settings = settings_factory("invoice-svc")
    body = invoice(7)
    holder = procs.start(
        "tests.support.claim_holder",
        "invoice-svc",
        "erp-retry-1",
        json.dumps(body),
        env=procs.settings_env(settings),
    )
    try:
        app = create_app(SPEC, settings)
        async with running(app) as client:
            relay = app.state.runtime.relay
            headers = {**KEY, "Idempotency-Key": "erp-retry-1"}
            # The holder is alive: its request may still run, its relay may publish.
            busy = await client.post("/v1/invoices", json=body, headers=headers)
            assert busy.status_code == 409, busy.text
            assert busy.json()["type"].endswith("/idempotency-key-in-use")
            assert busy.headers["retry-after"] == "1"
            await relay.flush()
            assert await relay.pending() == 3

            procs.kill(holder)

            # The very next attempt: the key is free, the relay publishes what was left.
            retried = await client.post("/v1/invoices", json=body, headers=headers)
            assert retried.status_code == 201, retried.text
            await relay.flush()
            assert await relay.pending() == 0
            again = await client.post("/v1/invoices", json=body, headers=headers)
            assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    finally:
        procs.kill(holder)
