"""Invoice service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, entrypoints

SPEC = ServiceSpec(
    name="invoice-svc",
    title="Invoice service",
    description="The ERP's front door: invoices, terms, disputes, voids and overdue detection.",
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(topics.INVOICES,),
)


#: ``app`` for ``uvicorn --factory invoice_svc.main:app``; ``main`` is the console script.
app, main = entrypoints(SPEC)

if __name__ == "__main__":
    main()
