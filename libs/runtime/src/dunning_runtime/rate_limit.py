"""Per-key rate limits: one tenant's runaway client cannot starve the others.

A token bucket per API key and service instance: ``burst`` requests at once, then
``rate`` per second on average. A request over the limit is a 429 problem with
``Retry-After`` (whole seconds until the next request would be let through).

Counted per instance, in memory: behind a load balancer over N replicas a key gets up
to N times the rate. That is the point of the limit (to keep one key from taking an
instance's capacity), and it needs no shared store. Wall-clock time: the limit is about
the load on the machine, not about a service's (possibly manual) business clock.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class KeyRateLimiter:
    """Token buckets per key; ``admit`` says whether a request may go on now."""

    def __init__(
        self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        """False when the rate is 0 (no limit)."""
        return self.rate > 0

    def admit(self, key: str) -> float:
        """Take one request's token for ``key``: 0 when admitted, else the seconds to wait."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        # Keys are secrets: the buckets are filed under a digest, never the key itself.
        name = hashlib.sha256(key.encode()).hexdigest()
        bucket = self._buckets.get(name)
        if bucket is None:  # only keys that passed authentication get here: a bounded set
            bucket = self._buckets[name] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """``wait_s`` as a Retry-After value: whole seconds, at least 1."""
        return max(1, math.ceil(wait_s))
