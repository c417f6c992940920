"""notify-svc's scheduled work: sending the notices that have become due."""

from __future__ import annotations

from dunning_runtime.app import Runtime, ScheduledJob
from notify_svc.settings import NotifySettings
from notify_svc.workers import Delivery


async def deliver_due(runtime: Runtime[NotifySettings]) -> int:
    """Send every notice due as of the clock (a held ``not_before`` that has come, a
    retry taken over from a dead instance) and wait for the outcomes."""
    return await runtime.worker(Delivery).deliver_due()


#: With the system clock the delivery worker already runs continuously; this job is what
#: ``POST /v1/admin/tick`` runs under the manual clock (and a safety net otherwise).
DELIVER = ScheduledJob("notify-deliver", deliver_due, interval_s=30.0)
