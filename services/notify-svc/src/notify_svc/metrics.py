"""notify-svc's metrics: notices by channel and outcome, and how long a send takes."""

from __future__ import annotations

from collections import Counter as Tally
from typing import get_args

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events.common import Channel as ChannelName
from dunning_runtime.db import on_commit

SENDS = Counter(
    "dunning_notifications_total",
    "Notices by channel and outcome (sent, failed, retried, possible_duplicate, suppressed)",
    ["channel", "outcome"],
)
SEND_DURATION = Histogram(
    "dunning_notification_send_duration_seconds",
    "One attempt to hand a notice to its channel (SMTP server, SMS gateway, webhook), by "
    "outcome: sent, retried (a temporary failure), failed",
    ["channel", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# Every channel's outcomes exist from the start at 0: a rate over the first notice (the
# first failure on a dashboard) needs a sample from before it.
for _channel in get_args(ChannelName):
    for _outcome_name in ("sent", "failed", "retried", "possible_duplicate", "suppressed"):
        SENDS.labels(_channel, _outcome_name)


def count_suppressed_on_commit(session: AsyncSession, channels: list[str]) -> None:
    """Count notices suppressed on ``channels`` once the transaction commits, so a chunk
    retried after a failure counts them once."""
    if not channels:
        return
    counts = Tally(channels)

    def count() -> None:
        for channel, n in counts.items():
            SENDS.labels(channel, "suppressed").inc(n)

    on_commit(session, count)
