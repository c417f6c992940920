"""Invoice service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, entrypoints
from invoice_svc import NAME, api, consumers, jobs
from invoice_svc.settings import InvoiceSettings

SPEC = ServiceSpec(
    name=NAME,
    port_offset=0,  # DUNNING_BASE_PORT + 0: its place in `dunning up` (dunning_cli.platform)
    title="Invoice service",
    description=(
        "The ERP's front door: invoices, terms, disputes, voids and overdue detection. "
        "Every /v1 route needs `Authorization: Bearer <key>`; errors are RFC 9457 "
        "problem+json naming the field; every POST is idempotent."
    ),
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(topics.INVOICES,),
    routers=(api.router,),
    subscriptions=(consumers.payments, consumers.fees),
    jobs=(jobs.OVERDUE,),
    # A batch carries up to 1,000 invoices; every other route keeps the default limit.
    body_limits={"/v1/invoices/batch": 32 * 1024 * 1024},
    settings_type=InvoiceSettings,
)


#: ``app`` for ``uvicorn --factory invoice_svc.main:app``; ``main`` is the console script.
app, main = entrypoints(SPEC)

if __name__ == "__main__":
    main()
