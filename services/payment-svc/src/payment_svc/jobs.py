"""payment-svc's scheduled jobs: none.

Everything payment-svc does is caused by a request (a payment, a reversal, a
processor's notice) or by an event (an invoice arriving takes waiting credit); nothing
falls due with time. Overdue detection is invoice-svc's, and the housekeeping every
service runs (outbox, inbox, Idempotency-Keys) comes from the runtime. This module
keeps payment-svc's layout the same as the other services'.
"""

from __future__ import annotations

from dunning_runtime.app import ScheduledJob

#: The service's own scheduled jobs (``ServiceSpec.jobs``).
JOBS: tuple[ScheduledJob, ...] = ()
