"""Settings: one prefix, validated at start-up with messages that name the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from dunning_cli.platform import SERVICE_ORDER, SERVICES
from dunning_runtime.settings import (
    ServiceSettings,
    load_settings,
    setting_env_names,
)
from dunning_svc.main import SPEC as DUNNING
from invoice_svc.main import SPEC as INVOICE
from invoice_svc.settings import InvoiceSettings
from notify_svc.main import SPEC as NOTIFY
from notify_svc.settings import NotifySettings
from payment_svc.main import SPEC as PAYMENT

ROOT = Path(__file__).resolve().parents[1]


def test_api_keys_map_keys_to_tenants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUNNING_API_KEYS", "acme:k1, globex:k2")
    settings = ServiceSettings(service_name="invoice-svc")
    assert settings.tenant_for_key("k1") == "acme"
    assert settings.tenant_for_key("k2") == "globex"
    assert settings.tenant_for_key("k3") is None


def test_service_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in setting_env_names():
        monkeypatch.delenv(name, raising=False)
    # The port comes from the service's place in the platform (ServiceSpec.port_offset).
    settings = load_settings(DUNNING)
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
        ({"DUNNING_KAFKA_LINGER_MS": "-1"}, "DUNNING_KAFKA_LINGER_MS"),
        ({"DUNNING_KAFKA_FETCH_MAX_WAIT_MS": "0"}, "DUNNING_KAFKA_FETCH_MAX_WAIT_MS"),
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


def test_kafka_latency_settings_reach_the_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults are the values the clients had before the settings (aiokafka's fetch wait,
    a 5 ms linger); set, they reach the bus the producer and consumers are made from."""
    from dunning_runtime.bus import create_bus

    settings = ServiceSettings(service_name="x", bus_url="kafka://k1:9092")
    bus = create_bus(settings)
    assert (bus.linger_ms, bus.fetch_max_wait_ms) == (5, 500)  # type: ignore[union-attr]
    monkeypatch.setenv("DUNNING_KAFKA_LINGER_MS", "0")
    monkeypatch.setenv("DUNNING_KAFKA_FETCH_MAX_WAIT_MS", "20")
    bus = create_bus(ServiceSettings(service_name="x", bus_url="kafka://k1:9092"))
    assert (bus.linger_ms, bus.fetch_max_wait_ms) == (0, 20)  # type: ignore[union-attr]


def test_load_settings_returns_valid_settings() -> None:
    assert load_settings("notify-svc", port=9999).port == 9999


def test_each_service_reads_its_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUNNING_TENANT_GRACE_DAYS", "acme:3")
    monkeypatch.setenv("DUNNING_SMTP_URL", "smtp://mail:25")
    invoice = load_settings(INVOICE)
    assert isinstance(invoice, InvoiceSettings)
    assert invoice.grace_days_for("acme") == 3 and invoice.grace_days_for("globex") == 0
    notify = load_settings(NOTIFY)
    assert isinstance(notify, NotifySettings) and notify.smtp_url == "smtp://mail:25"
    # The shared settings know neither: a service reads only what it uses.
    assert not hasattr(load_settings(PAYMENT), "smtp_url")
    assert not hasattr(notify, "grace_days")


def test_setting_env_names_cover_every_service() -> None:
    names = setting_env_names()
    assert {"DUNNING_GRACE_DAYS", "DUNNING_TENANT_GRACE_DAYS", "DUNNING_SMTP_URL"} <= names
    assert {"DUNNING_ADMIN_KEY", "DUNNING_BASE_PORT"} <= names
    assert "DUNNING_SMTP_URL" not in setting_env_names(ServiceSettings)


def test_settings_doc_lists_every_setting_and_who_reads_it() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    missing = sorted(name for name in setting_env_names() if f"`{name}`" not in text)
    assert not missing, f"docs/settings.md does not list {missing}"
    invoice_part = text[text.index("## invoice-svc only") : text.index("## notify-svc only")]
    assert "`DUNNING_GRACE_DAYS`" in invoice_part and "`DUNNING_TENANT_GRACE_DAYS`" in invoice_part
    assert "`DUNNING_SMTP_URL`" in text[text.index("## notify-svc only") :]


def test_base_port_moves_every_default_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in setting_env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DUNNING_BASE_PORT", "9001")
    specs = {spec.name: spec for spec in (INVOICE, PAYMENT, DUNNING, NOTIFY)}
    ports = [load_settings(specs[name]).port for name in SERVICE_ORDER]
    assert ports == [9001, 9002, 9003, 9004]
    monkeypatch.setenv("DUNNING_PORT", "7000")
    assert load_settings(INVOICE).port == 7000


def test_the_platform_list_and_the_services_agree_on_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DUNNING_PORT", raising=False)
    # The `dunning` command starts service i on base + i; a service started on its own
    # takes base + its ServiceSpec.port_offset: the same number, declared twice.
    specs = {spec.name: spec for spec in (INVOICE, PAYMENT, DUNNING, NOTIFY)}
    assert [specs[name].port_offset for name, _ in SERVICES] == [0, 1, 2, 3]
    assert [f"{name.replace('-', '_')}.main" for name, _ in SERVICES] == [m for _, m in SERVICES]
    # The runtime knows no service by name: a name alone has no default port.
    assert load_settings("invoice-svc").port == 0


def test_a_malformed_key_pair_is_refused_without_quoting_the_key() -> None:
    # A tenant forgotten before its key: the message start-up prints must not hold the key.
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(service_name="x", api_keys="acme:k1, sk-live-4f9a")
    [error] = refused.value.errors()
    assert "tenant:key pairs separated by commas; pair 2 is not" in error["msg"]
    assert "sk-live" not in error["msg"]


def test_admin_key_is_a_secret_compared_in_constant_time() -> None:
    settings = ServiceSettings(service_name="x", admin_key="s3cret", api_keys="acme:k1")
    assert settings.is_admin_key("s3cret")
    assert not settings.is_admin_key("k1") and not settings.is_admin_key("")
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    assert not ServiceSettings(service_name="x").is_admin_key("")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DUNNING_TENANT_GRACE_DAYS": "acme:400"}, "DUNNING_TENANT_GRACE_DAYS"),
        ({"DUNNING_GRACE_DAYS": "-1"}, "DUNNING_GRACE_DAYS"),
        ({"DUNNING_BASE_PORT": "70000"}, "DUNNING_BASE_PORT"),
    ],
)
def test_bad_service_settings_stop_start_up_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    code = (
        "from invoice_svc.main import SPEC; "
        "from dunning_runtime.settings import load_settings; load_settings(SPEC)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "invoice-svc: invalid settings" in result.stderr
    assert message in result.stderr
