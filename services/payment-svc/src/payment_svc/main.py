"""Payment service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, entrypoints

SPEC = ServiceSpec(
    name="payment-svc",
    title="Payment service",
    description="Payments and their allocation to invoices, reversals and processor webhooks.",
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(topics.PAYMENTS,),
)


#: ``app`` for ``uvicorn --factory payment_svc.main:app``; ``main`` is the console script.
app, main = entrypoints(SPEC)

if __name__ == "__main__":
    main()
