"""invoice-svc's scheduled work: overdue detection (``commands.overdue``), every minute
on the system clock; ``POST /v1/admin/tick`` runs it under the manual clock."""

from __future__ import annotations

from dunning_runtime.app import ScheduledJob
from invoice_svc import commands

OVERDUE = ScheduledJob("invoice-overdue", commands.detect_overdue, interval_s=60.0)
