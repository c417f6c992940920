"""Topic names, in one place: services never spell a topic themselves."""

from __future__ import annotations

INVOICES = "invoices"
PAYMENTS = "payments"
DUNNING_COMMANDS = "dunning.commands"
DUNNING_EVENTS = "dunning.events"
NOTIFICATIONS = "notifications"
#: Managed API keys: every service publishes and consumes it (dunning_runtime.api_keys).
API_KEYS = "api-keys"

#: Every topic, in the order the events flow (DESIGN.md, "Shape").
ALL_TOPICS: tuple[str, ...] = (
    INVOICES,
    PAYMENTS,
    DUNNING_COMMANDS,
    DUNNING_EVENTS,
    NOTIFICATIONS,
    API_KEYS,
)

DEAD_LETTER_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """Where events of ``topic`` go when they cannot be processed: ``invoices.dlq``."""
    return f"{topic}{DEAD_LETTER_SUFFIX}"
