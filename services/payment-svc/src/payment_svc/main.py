"""Payment service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, entrypoints
from payment_svc import api, consumers, jobs
from payment_svc.settings import PaymentSettings

SPEC = ServiceSpec(
    name="payment-svc",
    port_offset=1,  # DUNNING_BASE_PORT + 1: its place in `dunning up` (dunning_cli.platform)
    title="Payment service",
    description=(
        "Cash application: payments from the ERP and from processors' signed webhooks, "
        "allocation to invoices, unapplied credit, early-payment discounts and reversals. "
        "Every /v1 route needs `Authorization: Bearer <key>`, except /v1/webhooks/{provider}, "
        "which is authenticated by its `Dunning-Signature`; errors are RFC 9457 "
        "problem+json naming the field; every POST is idempotent."
    ),
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(topics.PAYMENTS,),
    routers=(api.router,),
    subscriptions=(consumers.invoice_view,),
    jobs=jobs.JOBS,
    # A batch carries up to 1,000 payments; every other route keeps the default limit.
    body_limits={"/v1/payments/batch": 32 * 1024 * 1024},
    settings_type=PaymentSettings,
    signed_prefixes=("/v1/webhooks/",),
)


#: ``app`` for ``uvicorn --factory payment_svc.main:app``; ``main`` is the console script.
app, main = entrypoints(SPEC)

if __name__ == "__main__":
    main()
