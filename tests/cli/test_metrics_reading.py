"""``dunning status`` and ``clock advance`` read /metrics as the metrics contract names it."""

from __future__ import annotations

from dunning_cli.metrics import parse

CONTRACT_TEXT = """\
# TYPE dunning_consumer_lag gauge
dunning_consumer_lag{service="dunning-svc",group="dunning-svc",topic="invoices",partition="0"} 2.0
dunning_consumer_lag{service="dunning-svc",group="dunning-svc",topic="invoices",partition="1"} 1.0
dunning_consumer_lag{service="dunning-svc",group="dunning-svc",topic="payments",partition="0"} 0.0
dunning_consumer_lag{service="notify-svc",group="notify-svc",topic="dunning.commands",partition="0"} 9.0
# TYPE dunning_outbox_backlog gauge
dunning_outbox_backlog{service="dunning-svc"} 3.0
dunning_outbox_backlog{service="notify-svc"} 7.0
# TYPE dunning_outbox_oldest_age_seconds gauge
dunning_outbox_oldest_age_seconds{service="dunning-svc"} 1.5
# TYPE dunning_events_dead_lettered_total counter
dunning_events_dead_lettered_total{service="dunning-svc",group="dunning-svc",topic="invoices"} 4.0
# TYPE dunning_events_consumed_total counter
dunning_events_consumed_total{service="dunning-svc",group="dunning-svc",topic="invoices",outcome="applied"} 10.0
"""


def test_a_reading_keeps_its_own_service_and_sums_partitions() -> None:
    reading = parse(CONTRACT_TEXT, "dunning-svc")
    assert reading.lag_by_topic == {"invoices": 3.0, "payments": 0.0}
    assert reading.backlog == 3.0 and reading.oldest_age_s == 1.5
    assert reading.dead_lettered_by_topic == {"invoices": 4.0}
    assert reading.flow == 10.0
    assert reading.knows_in_flight and not reading.idle


def test_idle_only_when_no_lag_and_no_backlog() -> None:
    text = CONTRACT_TEXT.replace("} 2.0", "} 0.0").replace("} 1.0", "} 0.0")
    text = text.replace(
        'dunning_outbox_backlog{service="dunning-svc"} 3.0',
        'dunning_outbox_backlog{service="dunning-svc"} 0.0',
    )
    assert parse(text, "dunning-svc").idle


def test_without_the_gauges_the_reading_says_it_cannot_tell() -> None:
    text = 'dunning_events_consumed_total{group="g",topic="invoices",outcome="applied"} 5.0\n'
    reading = parse(text, "invoice-svc")
    assert not reading.knows_in_flight and reading.backlog is None and reading.flow == 5.0
