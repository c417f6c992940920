"""Payment service: its ServiceSpec and entry point."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from dunning_events import topics
from dunning_runtime.app import ServiceSpec, create_app, serve

SPEC = ServiceSpec(
    name="payment-svc",
    title="Payment service",
    description="Payments and their allocation to invoices, reversals and processor webhooks.",
    versions=Path(__file__).parent / "migrations" / "versions",
    produces=(topics.PAYMENTS,),
)


def app() -> FastAPI:
    """The ASGI app, for `uvicorn --factory payment_svc.main:app`."""
    return create_app(SPEC)


def main() -> None:
    """Run the service (console script `payment-svc`)."""
    serve(SPEC)


if __name__ == "__main__":
    main()
