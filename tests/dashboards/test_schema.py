"""The dashboards type-check against Grafana's published schema (@grafana/schema + tsc).

Grafana itself cannot run here, so scripts/grafana-check.sh declares each dashboard JSON
as the schema's Dashboard type, and each panel's options as its plugin's Options type, and
runs `tsc --noEmit`. Needs node and npm: skips locally without them, fails under CI=true
(where .ci/run's tools step has run `scripts/grafana-check.sh install`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.dashboards.files import CHECK_SCRIPT, DASHBOARDS, dashboard_files, load_dashboard, panels


@pytest.fixture(scope="module")
def node() -> None:
    """Skips (or fails under CI) when node or npm is missing."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not found: the dashboard schema check needs them"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} — under CI this check may not skip", pytrace=False)
        pytest.skip(reason)


def grafana_check(directory: Path) -> subprocess.CompletedProcess[str]:
    """scripts/grafana-check.sh over the dashboards in ``directory``."""
    return subprocess.run(
        [str(CHECK_SCRIPT), "check", str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_committed_dashboards_match_grafanas_schema(node: None) -> None:
    result = grafana_check(DASHBOARDS)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in dashboard_files():
        assert f"generated {path.stem}.ts" in result.stdout


def broken_copy(tmp_path: Path, name: str, breaks: dict[str, Any]) -> Path:
    """A copy of dashboard ``name`` with one change per (panel title -> how to break it)."""
    dashboard = load_dashboard(DASHBOARDS / f"{name}.json")
    by_title = {panel["title"]: panel for panel in panels(dashboard)}
    for title, change in breaks.items():
        change(by_title[title])
    (tmp_path / f"{name}.json").write_text(json.dumps(dashboard, indent=2))
    return tmp_path


def test_check_refuses_a_field_of_the_wrong_type(node: None, tmp_path: Path) -> None:
    def height_as_text(panel: dict[str, Any]) -> None:
        panel["gridPos"]["h"] = "8"

    directory = broken_copy(tmp_path, "operations", {"Consumer lag (max)": height_as_text})
    result = grafana_check(directory)
    assert result.returncode != 0, "tsc accepted a gridPos height given as a string"
    assert "Type 'string' is not assignable to type 'number'" in result.stdout


def test_check_refuses_values_and_fields_the_schema_does_not_know(
    node: None, tmp_path: Path
) -> None:
    """Enum values, misspelt fields, and panel options (typed per plugin) are checked too."""

    def threshold_mode(panel: dict[str, Any]) -> None:
        panel["fieldConfig"]["defaults"]["thresholds"]["mode"] = "absolut"

    def misspelt(panel: dict[str, Any]) -> None:
        panel["descripton"] = panel.pop("description")

    def stat_colour(panel: dict[str, Any]) -> None:
        panel["options"]["colorMode"] = "bright"

    def no_legend(panel: dict[str, Any]) -> None:
        del panel["options"]["legend"]

    directory = broken_copy(
        tmp_path,
        "collections",
        {
            "DSO": threshold_mode,
            "Aging buckets": misspelt,
            "Overdue share by currency": stat_colour,
            "Stage transitions": no_legend,
        },
    )
    result = grafana_check(directory)
    assert result.returncode != 0
    for complaint in (
        "'\"absolut\"' is not assignable",
        "'\"descripton\"' does not exist",
        "'\"bright\"' is not assignable",
        "Property 'legend' is missing",
    ):
        assert complaint in result.stdout, f"tsc did not report {complaint}:\n{result.stdout}"


def test_check_refuses_a_panel_type_it_has_no_schema_for(node: None, tmp_path: Path) -> None:
    def unknown_type(panel: dict[str, Any]) -> None:
        panel["type"] = "fancy-funnel-panel"

    directory = broken_copy(tmp_path, "collections", {"Accounts by stage": unknown_type})
    result = grafana_check(directory)
    assert result.returncode != 0
    assert "no schema known for panel type(s) fancy-funnel-panel" in result.stderr
