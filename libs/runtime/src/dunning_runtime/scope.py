"""Who acts, when, and for which event source: the context every command runs in.

HTTP routes, event handlers and scheduled jobs build a ``Scope`` and pass it to
their service's commands, which write state and ``emit`` events in the caller's
transaction, so a change and its events commit together (principle 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import Envelope, Event, make_envelope
from dunning_runtime.outbox import Outbox


@dataclass(frozen=True)
class Scope:
    """One tenant at one instant, with the outbox its events go to.

    ``source`` is the CloudEvents source of what it emits, e.g. ``"/invoice-svc"``.
    """

    tenant: str
    now: datetime
    outbox: Outbox
    source: str

    @classmethod
    def of(cls, service: str, tenant: str, now: datetime, outbox: Outbox) -> Scope:
        """The scope of ``service``'s commands (``ServiceSpec.name``, e.g. ``invoice-svc``):
        its events come from ``source_of(service)``."""
        return cls(tenant, now, outbox, source_of(service))


def source_of(service: str) -> str:
    """The CloudEvents source of what ``service`` emits: ``/invoice-svc``."""
    return f"/{service}"


def envelope_of(scope: Scope, event: Event) -> Envelope:
    """``event`` in its envelope, stamped with the scope's tenant, source and instant."""
    return make_envelope(event, tenant=scope.tenant, source=scope.source, time=scope.now)


async def emit(session: AsyncSession, scope: Scope, *events: Event) -> None:
    """Stage ``events`` for the outbox in ``session``'s transaction, stamped with the
    scope's tenant, source and instant."""
    if events:
        await scope.outbox.add(session, *(envelope_of(scope, e) for e in events))
