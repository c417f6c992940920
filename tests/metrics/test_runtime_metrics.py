"""The runtime's metrics read from what they describe: lag from the bus, backlog from the
outbox, request durations by route template (on whichever backends the run uses)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from prometheus_client import REGISTRY

from dunning_events import topics
from dunning_runtime.app import create_app
from dunning_runtime.auth import Tenant
from dunning_runtime.bus import create_bus
from dunning_runtime.consumer import EventConsumer, Subscription
from dunning_runtime.db import Database
from dunning_runtime.messaging_tables import outbox
from dunning_runtime.metrics import ScrapeRefresh, consumer_lag, outbox_backlog
from tests.bus.test_bus_port import drain
from tests.bus.test_dead_letter import read_dlq, run_until, setup
from tests.support import ledger
from tests.support.events import message, overdue
from tests.support.fixtures import ledger_spec, running


async def test_lag_is_end_offset_minus_the_groups_committed_offset(settings_factory) -> None:
    settings = settings_factory()
    bus = create_bus(settings)
    await bus.start()
    await bus.ensure_topics([topics.INVOICES])
    try:
        await bus.publish([message(overdue("acc-1", seq)) for seq in range(1, 11)])
        # Never read: the group is behind by everything.
        lag = await consumer_lag(bus, [("lagging", (topics.INVOICES,))])
        assert sum(lag.values()) == 10
        assert {p for _, _, p in lag} == set(range(settings.bus_partitions))
        reader = bus.consumer("lagging", [topics.INVOICES])
        await reader.start()
        try:
            records = await drain(reader, 10)
            # One key, one partition: committing four leaves six behind there.
            await reader.commit({(r.topic, r.partition): r.offset + 1 for r in records[:4]})
        finally:
            await reader.stop()
        lag = await consumer_lag(bus, [("lagging", (topics.INVOICES,))])
        partition = records[0].partition
        assert lag[("lagging", topics.INVOICES, partition)] == 6
        assert sum(lag.values()) == 6
    finally:
        await bus.close()


async def test_outbox_backlog_counts_rows_and_ages_the_oldest(settings_factory) -> None:
    settings = settings_factory()
    database = Database(settings.effective_database_url, schema=settings.effective_schema)
    await database.migrate(ledger_spec().versions)
    try:
        assert await outbox_backlog(database) == (0, 0.0)
        written = datetime(2026, 1, 1, tzinfo=UTC)
        async with database.transaction() as session:
            await session.execute(
                outbox.insert(),
                [
                    {
                        "event_id": f"e-{n}",
                        "topic": topics.INVOICES,
                        "key": b"k",
                        "value": b"v",
                        "headers": "[]",
                        "created_at": written,
                    }
                    for n in range(3)
                ],
            )
        count, age = await outbox_backlog(database)
        assert count == 3
        # At least the time since it was written (the wall clock only moves on).
        assert age >= (datetime.now(UTC) - written).total_seconds() - 1
    finally:
        await database.dispose()


def _count(labels: dict[str, str]) -> float:
    value = REGISTRY.get_sample_value("dunning_http_request_duration_seconds_count", labels)
    return value or 0.0


async def test_request_duration_is_labelled_by_route_template_and_status(
    settings_factory,
) -> None:
    router = APIRouter(prefix="/v1/things")

    @router.get("/{thing_id}")
    async def get_thing(thing_id: str, tenant: Tenant) -> dict[str, Any]:
        return {"thing_id": thing_id, "tenant": tenant}

    app = create_app(ledger_spec(router), settings_factory("ledger-svc"))
    base = {"service": "ledger-svc", "method": "GET"}
    templated = {**base, "route": "/v1/things/{thing_id}", "status": "200"}
    refused = {**base, "route": "/v1/things/{thing_id}", "status": "401"}
    unmatched = {**base, "route": "unmatched", "status": "404"}
    before = {
        name: _count(labels)
        for name, labels in (("ok", templated), ("refused", refused), ("unmatched", unmatched))
    }
    async with running(app) as client:
        acme = {"Authorization": "Bearer acme-key"}
        for thing in ("a", "b", "c"):
            assert (await client.get(f"/v1/things/{thing}", headers=acme)).status_code == 200
        # Refused by the key check before routing: still counted under its route.
        assert (await client.get("/v1/things/d")).status_code == 401
        assert (await client.get("/v1/nothing-here", headers=acme)).status_code == 404
        # Probes and the scrape itself are not timed.
        assert (await client.get("/healthz")).status_code == 200
        scraped = (await client.get("/metrics")).text
    assert _count(templated) - before["ok"] == 3
    assert _count(refused) - before["refused"] == 1
    assert _count(unmatched) - before["unmatched"] == 1
    assert 'route="/healthz"' not in scraped and 'route="/metrics"' not in scraped
    assert 'route="/v1/things/a"' not in scraped
    # The scrape refreshed the ledger's lag and backlog gauges.
    assert 'dunning_outbox_backlog{service="ledger-svc"} 0.0' in scraped
    lag = 'dunning_consumer_lag{group="ledger",partition="0",service="ledger-svc",topic="invoices"}'
    assert f"{lag} 0.0" in scraped


async def test_a_dead_lettered_event_is_counted_for_its_service_group_and_topic(
    settings_factory,
) -> None:
    _settings, database, bus = await setup(settings_factory)
    labels = {"service": "ledger-svc", "group": "ledger", "topic": topics.INVOICES}
    dead_before = REGISTRY.get_sample_value("dunning_events_dead_lettered_total", labels) or 0
    applied = {**labels, "outcome": "applied"}
    applied_before = REGISTRY.get_sample_value("dunning_events_consumed_total", applied) or 0
    poison = replace(message(overdue("acc-1", 2)), value=b'{"account_id": 42}')
    await bus.publish([message(overdue("acc-1", 1)), poison])
    consumer = EventConsumer(
        bus,
        database,
        Subscription("ledger", (topics.INVOICES,), ledger.apply_event),
        service="ledger-svc",
    )
    try:
        await run_until(consumer, database, 1)
        await read_dlq(bus, 1)
    finally:
        await bus.close()
        await database.dispose()
    dead = REGISTRY.get_sample_value("dunning_events_dead_lettered_total", labels) or 0
    assert dead - dead_before == 1
    assert (REGISTRY.get_sample_value("dunning_events_consumed_total", applied) or 0) == (
        applied_before + 1
    )


async def test_a_scrape_waits_for_one_refresh_at_most_its_bound() -> None:
    release = asyncio.Event()
    runs = 0

    async def slow() -> None:
        nonlocal runs
        runs += 1
        await release.wait()

    refresh = ScrapeRefresh(slow, name="test", timeout_s=0.05, min_interval_s=60)
    # The refresh is stuck: each scrape returns after its bound, and joins the same run.
    await refresh()
    await asyncio.gather(refresh(), refresh())
    assert runs == 1
    release.set()
    await refresh()  # joins the run under way until it ends
    # Fresh within min_interval_s: a scrape storm starts nothing more.
    await asyncio.gather(*(refresh() for _ in range(10)))
    assert runs == 1
    await refresh.close()


async def test_a_failing_refresh_keeps_the_scrape_answering(caplog) -> None:
    async def broken() -> None:
        raise ConnectionError("database away")

    refresh = ScrapeRefresh(broken, name="test-svc")
    await refresh()
    assert "test-svc: refreshing metrics failed: ConnectionError: database away" in caplog.text
