"""Fixtures for every test folder (tests/, libs/*/tests, services/*/tests)."""

pytest_plugins = ["tests.support.fixtures"]
