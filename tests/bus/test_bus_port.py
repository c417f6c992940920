"""The bus port's guarantees, on whichever backend the run is configured for."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from dunning_events import topics
from dunning_runtime.bus import create_bus, partition_for
from dunning_runtime.bus.port import Record
from tests.support.events import message, overdue


async def drain(consumer: object, expected: int, timeout: float = 60) -> list[Record]:
    """Poll until ``expected`` records arrived (or fail with what did)."""
    records: list[Record] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(records) < expected and loop.time() < deadline:
        records.extend(await consumer.poll(0.5, 500))  # type: ignore[attr-defined]
    assert len(records) == expected, f"got {len(records)} of {expected} records"
    return records


async def test_per_key_order_and_partitioning(settings_factory) -> None:
    settings = settings_factory()
    bus = create_bus(settings)
    await bus.start()
    await bus.ensure_topics([topics.INVOICES])
    envelopes = [overdue(f"acc-{k}", seq) for seq in range(1, 6) for k in range(40)]
    await bus.publish([message(e) for e in envelopes])
    consumer = bus.consumer("order-check", [topics.INVOICES])
    await consumer.start()
    try:
        records = await drain(consumer, len(envelopes))
    finally:
        await consumer.stop()
        await bus.close()
    for record in records:
        # Both backends place a key with Kafka's partitioner.
        assert record.partition == partition_for(record.key, settings.bus_partitions)
        assert record.topic == topics.INVOICES
    by_key: dict[bytes, list[str]] = defaultdict(list)
    for record in records:
        by_key[record.key].append(record.header("ce_id") or "")
    for key, ids in by_key.items():
        expected = [e.id for e in envelopes if e.partition_key.encode() == key]
        assert ids == expected, f"order broken for {key!r}"
    assert len(by_key) == 40


async def test_group_resumes_from_committed_offset(settings_factory) -> None:
    settings = settings_factory()
    bus = create_bus(settings)
    await bus.start()
    await bus.ensure_topics([topics.INVOICES])
    await bus.publish([message(overdue("acc-1", seq)) for seq in range(1, 11)])
    first = bus.consumer("resume", [topics.INVOICES])
    await first.start()
    records = await drain(first, 10)
    # Commit only the first four: a restart must re-read the other six, no more.
    await first.commit({(r.topic, r.partition): r.offset + 1 for r in records[:4]})
    await first.stop()
    second = bus.consumer("resume", [topics.INVOICES])
    await second.start()
    try:
        again = await drain(second, 6)
    finally:
        await second.stop()
        await bus.close()
    assert [r.offset for r in again] == [r.offset for r in records[4:]]


async def test_two_members_split_partitions_and_commits_are_owner_checked(settings_factory) -> None:
    settings = settings_factory()
    bus = create_bus(settings)
    await bus.start()
    await bus.ensure_topics([topics.PAYMENTS])
    a = bus.consumer("split", [topics.PAYMENTS])
    b = bus.consumer("split", [topics.PAYMENTS])
    await a.start()
    await b.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        # Poll both until the group settles with every partition owned exactly once.
        while loop.time() < deadline:
            await a.poll(0.2, 1)
            await b.poll(0.2, 1)
            owned_a, owned_b = a.assignment(), b.assignment()
            if owned_a and owned_b and len(owned_a | owned_b) == settings.bus_partitions:
                break
        assert owned_a and owned_b, "both members should own partitions"
        assert not owned_a & owned_b, "a partition is owned twice"
        assert len(owned_a | owned_b) == settings.bus_partitions
    finally:
        await a.stop()
        await b.stop()
        await bus.close()


async def test_embedded_fetch_is_fair_across_partitions(settings_factory, tmp_path) -> None:
    """A backlog in the lowest partition does not starve the others."""
    from dunning_runtime.bus import EmbeddedBus

    bus = EmbeddedBus(tmp_path / "fair.sqlite", partitions=4)
    await bus.start()
    await bus.ensure_topics([topics.INVOICES])
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < 4:
        keys.setdefault(partition_for(f"acme:acc-{n}".encode(), 4), f"acc-{n}")
        n += 1
    await bus.publish([message(overdue(keys[0], seq)) for seq in range(1, 1001)])
    await bus.publish([message(overdue(keys[p], 1)) for p in (1, 2, 3)])
    consumer = bus.consumer("fair", [topics.INVOICES])
    await consumer.start()
    try:
        first = await consumer.poll(1.0, 100)
    finally:
        await consumer.stop()
        await bus.close()
    assert {r.partition for r in first} == {0, 1, 2, 3}
    backlog = [r.offset for r in first if r.partition == 0]
    assert backlog == list(range(len(backlog))), "one partition's records stay in order"


async def test_seek_rereads_from_the_offset_given(settings_factory) -> None:
    settings = settings_factory()
    bus = create_bus(settings)
    await bus.start()
    await bus.ensure_topics([topics.INVOICES])
    await bus.publish([message(overdue("acc-seek", seq)) for seq in range(1, 11)])
    consumer = bus.consumer("seeker", [topics.INVOICES])
    await consumer.start()
    try:
        records = await drain(consumer, 10)
        partition = records[0].partition
        await consumer.seek({(topics.INVOICES, partition): records[4].offset})
        again = await drain(consumer, 6)
    finally:
        await consumer.stop()
        await bus.close()
    assert [r.offset for r in again] == [r.offset for r in records[4:]]
