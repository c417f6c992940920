"""How ``dunning dlq`` shows a dead-lettered event (the reading is ``dunning_runtime.dlq``)."""

from __future__ import annotations

from dunning_runtime.dlq import DeadLetter


def describe(letter: DeadLetter) -> str:
    """One tab-separated line for a terminal: where it is, what it was, why it failed."""
    r = letter.record
    return "\t".join(
        [
            f"{r.partition}@{r.offset}",
            letter.event_id,
            r.header("ce_type") or "-",
            letter.original_position,
            r.header("dlq_consumer_group") or "-",
            r.header("dlq_failed_at") or "-",
            f"attempts={r.header('dlq_attempts') or '?'}",
            letter.reason.replace("\n", " ")[:300],
        ]
    )
