"""Per-key rate limits: a key over its limit gets 429 with Retry-After, other tenants
are not affected, and the key is let through again once its bucket refills."""

from __future__ import annotations

from typing import Any

from dunning_runtime.app import create_app
from dunning_runtime.rate_limit import KeyRateLimiter
from invoice_svc.main import SPEC
from tests.support.fixtures import running

ACME = {"Authorization": "Bearer acme-key"}
GLOBEX = {"Authorization": "Bearer globex-key"}


class Ticks:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_a_burst_through_then_the_rate() -> None:
    ticks = Ticks()
    limiter = KeyRateLimiter(2.0, 3, clock=ticks)
    assert [limiter.admit("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.admit("k")
    assert wait == 0.5 and KeyRateLimiter.retry_after(wait) == 1
    assert limiter.admit("other") == 0.0  # each key has its own bucket
    ticks.now += 0.5
    assert limiter.admit("k") == 0.0
    ticks.now += 60  # refills to the burst, never beyond
    assert [limiter.admit("k") for _ in range(4)][-1] > 0
    assert KeyRateLimiter(0, 1).admit("k") == 0.0  # 0: no limit


async def test_a_key_over_its_limit_gets_429_and_others_go_on(settings_factory: Any) -> None:
    # A token every 10 s: the burst of 3 is all the test's requests can use.
    settings = settings_factory(SPEC.name, rate_limit_per_s=0.1, rate_limit_burst=3)
    async with running(create_app(SPEC, settings)) as client:
        answers = [await client.get("/v1/invoices", headers=ACME) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        limited = answers[-1]
        assert limited.headers["content-type"] == "application/problem+json"
        assert limited.json()["type"].endswith("/rate-limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 10
        # Writes count too, and nothing of a refused one is applied.
        refused = await client.post("/v1/invoices", json={"invoice_id": "X"}, headers=ACME)
        assert refused.status_code == 429
        # Another tenant has its whole burst of its own; the probes are not limited.
        others = [await client.get("/v1/invoices", headers=GLOBEX) for _ in range(3)]
        assert [a.status_code for a in others] == [200, 200, 200]
        assert (await client.get("/v1/invoices", headers=ACME)).status_code == 429
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        # A wrong key is still a 401, not a 429: the limit counts authenticated keys only.
        wrong = await client.get("/v1/invoices", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
