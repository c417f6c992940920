"""The embedded durable log: Kafka's semantics in one SQLite file.

It lets the whole platform run on one machine with no server to install, and
several processes can share the file at once (SQLite WAL mode).

Design notes:

* Appends take SQLite's write lock (``BEGIN IMMEDIATE``) and assign offsets
  from ``partition_heads`` inside that transaction, so offsets become visible
  in commit order: a reader that has seen offset N has seen every offset below
  it. That avoids the "late commit" gap that SQL logs read by a sequence number
  suffer from (Watermill needed an xid8 snapshot filter on PostgreSQL for it).
* Consumer groups: members heartbeat into ``group_members``; every member
  derives the same assignment from the sorted list of live members; a member
  claims a partition through a lease in ``partition_owners`` only when the
  previous owner released it or its lease expired, so one partition is never
  read by two live members at once and per-key order holds across rebalances.
* ``commit`` updates the group's offset only while the member still holds the
  partition's lease (checked in the same statement).
* A poll reads every owned, unpaused partition in one statement, a fair share of
  the batch from each, so a backlog in one partition does not starve the others.
* Retention (``enforce_retention``) deletes records older than the age limit or
  beyond the size limit of their partition, never at or after the lowest offset a
  group still needs there.
* Writers wait for SQLite's write lock in short slices (``begin``), so closing
  the log never waits behind another process's transaction for long.
"""

from dunning_runtime.bus.embedded.group import EmbeddedConsumer
from dunning_runtime.bus.embedded.log import EmbeddedBus

__all__ = ["EmbeddedBus", "EmbeddedConsumer"]
