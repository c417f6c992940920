"""The cyclic garbage collector, set for a process that allocates for every event.

Decoding and applying an event allocates a few hundred objects (payload models,
dicts, SQL parameters), so CPython's default thresholds (a young collection every
700 allocations, a full one every 100 young ones) run the collector thousands of
times a second, and each full collection walks every object the process holds,
most of them modules, schemas and mappers that live as long as the process. In
``make bench`` on Kafka + PostgreSQL that was ~30-45 µs of ~90 µs CPU per event.

``settle()`` is called once the service has started: it moves everything alive
then into the permanent generation (``gc.freeze``), which collections skip, and
collects the young generation less often. Memory is still freed by reference
counting as usual; only garbage cycles that exist at that moment stay.
"""

from __future__ import annotations

import gc

#: Allocations (net) between two young collections; CPython's default is 700.
YOUNG_THRESHOLD = 20_000

_settled = False


def settle(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Freeze the objects alive after start-up and collect young objects less often.

    Idempotent: only the first call in a process freezes (several apps in one test
    process would otherwise freeze each other's garbage).
    """
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
