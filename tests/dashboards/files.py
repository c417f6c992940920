"""Where the Grafana files live, and how to read the dashboards, for the dashboard tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "dunning.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dunning.yaml"
PROMETHEUS_CONFIG = GRAFANA / "otel-lgtm-prometheus.yaml"
CHECK = GRAFANA / "check"
CHECK_SCRIPT = ROOT / "scripts" / "grafana-check.sh"
COMPOSE_OBSERVABILITY = ROOT / "docker-compose.observability.yml"


def dashboard_files() -> list[Path]:
    """The committed dashboards, sorted by name."""
    return sorted(DASHBOARDS.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    """One dashboard file as Grafana reads it."""
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data: rows are skipped, panels inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel
