"""Fixtures for every test folder (tests/, libs/*/tests, services/*/tests)."""

from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.support.fixtures"]

# Property tests check what the code decides, never how fast: hypothesis's per-example
# deadline (200 ms) and its too-slow health check are timing assertions, and they fail at
# random on a busy machine (CI runs both backends' suites side by side on 2 cores).
settings.register_profile("dunning", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("dunning")
