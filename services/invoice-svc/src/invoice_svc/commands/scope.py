"""The scope invoice-svc's use cases act in: its events come from ``/invoice-svc``."""

from __future__ import annotations

from datetime import datetime

from dunning_runtime.outbox import Outbox
from dunning_runtime.scope import Scope

SOURCE = "/invoice-svc"


def scope_for(tenant: str, now: datetime, outbox: Outbox) -> Scope:
    """The scope of invoice-svc's commands: its events come from ``/invoice-svc``."""
    return Scope(tenant, now, outbox, SOURCE)
