"""Topic names, in one place. Services never spell a topic themselves."""

from __future__ import annotations

INVOICES = "invoices"
PAYMENTS = "payments"
DUNNING_COMMANDS = "dunning.commands"
DUNNING_EVENTS = "dunning.events"
NOTIFICATIONS = "notifications"

ALL_TOPICS: tuple[str, ...] = (INVOICES, PAYMENTS, DUNNING_COMMANDS, DUNNING_EVENTS, NOTIFICATIONS)

DEAD_LETTER_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """Where events of ``topic`` go when they cannot be processed."""
    return topic + DEAD_LETTER_SUFFIX
