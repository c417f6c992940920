"""Invoice service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, create_app, serve

SPEC = ServiceSpec(
    name="invoice-svc",
    title="Invoice service",
    description="The ERP's front door: invoices, terms, disputes, voids and overdue detection.",
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(topics.INVOICES,),
)


def app() -> FastAPI:
    """The ASGI app, for `uvicorn --factory invoice_svc.main:app`."""
    return create_app(SPEC)


def main() -> None:
    """Run the service (console script `invoice-svc`)."""
    serve(SPEC)


if __name__ == "__main__":
    main()
