"""The ``task`` channel: a call task for a collector, opened in notify-svc's own
database (``GET /v1/tasks``). It never leaves the process, so it is opened in the
same transaction that records the notice as sent: exactly once, with no retry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from notify_svc.channels import Outgoing


def task_row(message: Outgoing, row: Any, now: datetime) -> dict[str, Any]:
    """The ``tasks`` row a notice opens; the task id is the notification id."""
    request = row["request"]
    return {
        "tenant": message.tenant,
        "task_id": message.notification_id,
        "notification_id": message.notification_id,
        "account_id": row["account_id"],
        "account_name": row["account_name"],
        "stage": row["stage"],
        "contact": request["recipient"],
        "subject": message.subject,
        "body_text": message.text,
        "total_overdue": request.get("total_overdue", []),
        "status": "open",
        "created_at": now,
    }
