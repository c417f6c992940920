"""The scope payment-svc's use cases act in: its events come from ``/payment-svc``."""

from __future__ import annotations

from datetime import datetime

from dunning_runtime.outbox import Outbox
from dunning_runtime.scope import Scope

SOURCE = "/payment-svc"


def scope_for(tenant: str, now: datetime, outbox: Outbox) -> Scope:
    """The scope of payment-svc's commands: its events come from ``/payment-svc``."""
    return Scope(tenant, now, outbox, SOURCE)
