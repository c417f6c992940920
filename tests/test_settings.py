"""Settings: one prefix, validated at start-up with messages that name the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dunning_runtime.settings import ServiceSettings, load_settings, setting_env_names


def test_api_keys_map_keys_to_tenants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUNNING_API_KEYS", "acme:k1, globex:k2")
    settings = ServiceSettings(service_name="invoice-svc")
    assert settings.tenant_for_key("k1") == "acme"
    assert settings.tenant_for_key("k2") == "globex"
    assert settings.tenant_for_key("k3") is None


def test_service_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in setting_env_names():
        monkeypatch.delenv(name, raising=False)
    settings = ServiceSettings(service_name="dunning-svc")
    assert settings.port == 8003
    assert settings.is_embedded_bus
    assert str(settings.embedded_bus_path) == "var/bus.sqlite"
    assert settings.effective_database_url == "sqlite+aiosqlite:///var/dunning-svc.sqlite"
    assert settings.effective_schema is None


def test_postgres_gets_a_schema_per_service() -> None:
    settings = ServiceSettings(
        service_name="payment-svc", database_url="postgresql+asyncpg://u@h/db"
    )
    assert settings.effective_schema == "payment_svc"


def test_kafka_url_lists_bootstrap_servers() -> None:
    settings = ServiceSettings(service_name="x", bus_url="kafka://k1:9092,k2:9092")
    assert settings.kafka_bootstrap == ["k1:9092", "k2:9092"]
    assert not settings.is_embedded_bus


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DUNNING_API_KEYS": "acme"}, "DUNNING_API_KEYS"),
        ({"DUNNING_BUS_URL": "redis://x"}, "DUNNING_BUS_URL"),
        ({"DUNNING_DATABASE_URL": "mysql://x"}, "DUNNING_DATABASE_URL"),
        ({"DUNNING_CLOCK": "lunar"}, "DUNNING_CLOCK"),
        ({"DUNNING_BUS_PARTITIONS": "0"}, "DUNNING_BUS_PARTITIONS"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_variable(env: dict[str, str], message: str) -> None:
    code = "from dunning_runtime.settings import load_settings; load_settings('invoice-svc')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "invoice-svc: invalid settings" in result.stderr
    assert message in result.stderr


def test_load_settings_returns_valid_settings() -> None:
    assert load_settings("notify-svc", port=9999).port == 9999
