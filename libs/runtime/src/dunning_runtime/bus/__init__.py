"""The bus port and its two adapters; ``create_bus`` picks one from the settings."""

from __future__ import annotations

from dunning_runtime.bus.embedded import EmbeddedBus
from dunning_runtime.bus.kafka import KafkaBus
from dunning_runtime.bus.port import Bus, BusConsumer, OutgoingMessage, Record, partition_for
from dunning_runtime.settings import ServiceSettings
from dunning_runtime.tls import kafka_client_options

__all__ = [
    "Bus",
    "BusConsumer",
    "EmbeddedBus",
    "KafkaBus",
    "OutgoingMessage",
    "Record",
    "create_bus",
    "partition_for",
]


def create_bus(settings: ServiceSettings) -> EmbeddedBus | KafkaBus:
    """The adapter named by ``DUNNING_BUS_URL``; services never need to know which."""
    if settings.is_embedded_bus:
        return EmbeddedBus(
            settings.embedded_bus_path,
            partitions=settings.bus_partitions,
            topic_prefix=settings.topic_prefix,
            retention_hours=settings.embedded_log_retention_hours,
            max_records=settings.embedded_log_max_records,
        )
    return KafkaBus(
        settings.kafka_bootstrap,
        partitions=settings.bus_partitions,
        replication_factor=settings.bus_replication_factor,
        topic_prefix=settings.topic_prefix,
        client_id=settings.service_name,
        client_options=kafka_client_options(settings),
        linger_ms=settings.kafka_linger_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
