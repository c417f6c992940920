"""The Grafana provisioning and the observability compose layer fit together.

No Docker and no Grafana here, so these tests read the files: every file the compose layer
mounts exists and lands where grafana/otel-lgtm reads provisioning; the dashboards provider
reads the folder the dashboards are mounted at; every datasource uid a dashboard or a link
names is provisioned; Prometheus scrapes each service at the port compose gives it; and the
dashboards hold to the house rules (a description and a unit on every panel, the datasource
variable, unique ids).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from dunning_cli.platform import DEFAULT_PORTS
from tests.dashboards.files import (
    CHECK,
    COMPOSE_OBSERVABILITY,
    DASHBOARDS,
    DATASOURCES,
    PROMETHEUS_CONFIG,
    PROVIDERS,
    ROOT,
    dashboard_files,
    load_dashboard,
    panels,
)
from tests.dashboards.queries import (
    GRAFANA_BUILTINS,
    UnknownVariableError,
    dashboard_queries,
    dashboard_variables,
    substitute,
)

#: Where grafana/otel-lgtm reads Grafana's provisioning and Prometheus's configuration.
OTEL_LGTM_PROVISIONING = PurePosixPath("/otel-lgtm/grafana/conf/provisioning")
OTEL_LGTM_PROMETHEUS = PurePosixPath("/otel-lgtm/prometheus.yaml")
#: The Grafana each otel-lgtm tag ships: the schema check must be pinned to it.
GRAFANA_OF_OTEL_LGTM = {"0.11.10": "12.1.1"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def lgtm() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(COMPOSE_OBSERVABILITY)["services"]
    [service] = [
        s for s in services.values() if s.get("image", "").startswith("grafana/otel-lgtm:")
    ]
    lgtm_service: dict[str, Any] = service
    return lgtm_service


def mounts() -> dict[Path, PurePosixPath]:
    """Host path -> container path of every bind mount of the otel-lgtm container."""
    out = {}
    for volume in lgtm()["volumes"]:
        source, target, *_ = volume.split(":")
        out[(ROOT / source).resolve()] = PurePosixPath(target)
    return out


def test_every_mounted_file_exists_and_lands_where_otel_lgtm_reads_it() -> None:
    mounted = mounts()
    for source in mounted:
        assert source.exists(), f"docker-compose.observability.yml mounts missing {source}"
    assert mounted[DATASOURCES].parent == OTEL_LGTM_PROVISIONING / "datasources"
    assert mounted[PROVIDERS].parent == OTEL_LGTM_PROVISIONING / "dashboards"
    assert mounted[PROMETHEUS_CONFIG] == OTEL_LGTM_PROMETHEUS
    # Read-only: Grafana must not write into the repository.
    assert all(volume.endswith(":ro") for volume in lgtm()["volumes"])


def test_dashboards_provider_reads_the_mounted_dashboards() -> None:
    [provider] = load_yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    dashboards_dir = (ROOT / "deploy" / "grafana" / "dashboards").resolve()
    assert PurePosixPath(provider["options"]["path"]) == mounts()[dashboards_dir]


def datasources() -> dict[str, dict[str, Any]]:
    return {ds["uid"]: ds for ds in load_yaml(DATASOURCES)["datasources"]}


def test_datasources_link_exemplars_traces_metrics_and_logs_to_each_other() -> None:
    by_uid = datasources()
    assert {by_uid[uid]["type"] for uid in ("prometheus", "tempo", "loki")} == {
        "prometheus",
        "tempo",
        "loki",
    }
    [destination] = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["datasourceUid"] == "tempo"
    tempo = by_uid["tempo"]["jsonData"]
    assert tempo["tracesToMetrics"]["datasourceUid"] == "prometheus"
    for query in tempo["tracesToMetrics"]["queries"]:
        # $$ is Grafana's escape for a literal $ in provisioning files.
        assert "{$$__tags}" in query["query"], query
        assert "dunning_" in query["query"]
    assert tempo["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert tempo["serviceMap"]["datasourceUid"] == "prometheus"
    assert by_uid["loki"]["jsonData"]["derivedFields"][0]["datasourceUid"] == "tempo"
    assert [uid for uid, ds in by_uid.items() if ds.get("isDefault")] == ["prometheus"]


def test_prometheus_scrapes_each_service_where_compose_runs_it() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    [job] = config["scrape_configs"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:{port}" for name, port in DEFAULT_PORTS.items()}
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # Grafana's $__rate_interval is derived from the datasource's scrape interval.
    interval = datasources()["prometheus"]["jsonData"]["timeInterval"]
    assert config["global"]["scrape_interval"] == interval


def test_schema_check_is_pinned_to_the_grafana_compose_runs() -> None:
    tag = lgtm()["image"].split(":", 1)[1]
    assert tag in GRAFANA_OF_OTEL_LGTM, (
        f"otel-lgtm {tag}: look up the Grafana it ships, pin @grafana/schema to it in "
        "deploy/grafana/check/package.json, and add it to GRAFANA_OF_OTEL_LGTM"
    )
    package = json.loads((CHECK / "package.json").read_text())
    assert package["devDependencies"]["@grafana/schema"] == GRAFANA_OF_OTEL_LGTM[tag]
    lock = json.loads((CHECK / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@grafana/schema"]["version"] == GRAFANA_OF_OTEL_LGTM[tag]


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_dashboard_follows_the_house_rules(path: Path) -> None:
    dashboard = load_dashboard(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] in datasources()
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    ids = [p["id"] for p in rows] + [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
    for panel in panels(dashboard):
        title = panel["title"]
        assert len(panel.get("description", "")) > 40, f"{title}: no description worth reading"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", title
            assert target["expr"].strip(), title
        for link in panel["fieldConfig"]["defaults"].get("links", []):
            for pane in explore_panes(link["url"]).values():
                uids = {pane["datasource"]} | {q["datasource"]["uid"] for q in pane["queries"]}
                assert uids <= set(datasources()), f"{title}: link to unknown datasource {uids}"


def explore_panes(url: str) -> dict[str, Any]:
    """The panes of an Explore link, as Grafana decodes them (the link's ${...} kept)."""
    split = urlsplit(url)
    assert split.path == "/explore", url
    [panes] = parse_qs(split.query)["panes"]
    try:
        decoded: dict[str, Any] = json.loads(panes)
    except json.JSONDecodeError as error:
        pytest.fail(f"the link's panes are not JSON ({error}): {panes}")
    return decoded


def test_uids_are_unique_and_dashboards_link_to_each_other() -> None:
    dashboards = [load_dashboard(p) for p in dashboard_files()]
    assert {d["title"] for d in dashboards} >= {"Dunning — operations", "Dunning — collections"}
    uids = [d["uid"] for d in dashboards]
    assert len(uids) == len(set(uids))
    tags = {tag for d in dashboards for tag in d["tags"]}
    for dashboard in dashboards:
        for link in dashboard["links"]:
            assert set(link["tags"]) <= tags, f"{dashboard['title']} links to no dashboard"


def test_red_thresholds_where_an_operator_must_act() -> None:
    """The panels docs/operations.md says turn red do have a red step."""
    red = {
        "operations": [
            "Consumer lag (max)",
            "Outbox backlog",
            "Oldest unpublished event",
            "Dead letters",
            "HTTP 5xx ratio",
            "HTTP p95 latency",
            "Consumer lag by group and topic",
            "5xx ratio by service and route",
            "Latency p95 by route",
        ],
        "collections": ["DSO", "Overdue share by currency", "Notice failure ratio by channel"],
    }
    guide = (ROOT / "docs" / "operations.md").read_text()
    for name, titles in red.items():
        dashboard = load_dashboard(DASHBOARDS / f"{name}.json")
        by_title = {p["title"]: p for p in panels(dashboard)}
        for title in titles:
            steps = by_title[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert "red" in [s["color"] for s in steps], f"{name}: {title} never turns red"
            assert title in guide, f"docs/operations.md does not explain {title}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_every_query_names_only_variables_the_dashboard_defines(path: Path) -> None:
    dashboard = load_dashboard(path)
    variables = dashboard_variables(dashboard)
    for query in dashboard_queries(path.stem, dashboard):
        try:
            substitute(query.expr, variables, GRAFANA_BUILTINS)
        except UnknownVariableError as error:
            pytest.fail(f"{path.stem}: {query.title}: unknown variable {error}")


def test_prometheus_config_is_valid_for_prometheus(tmp_path: Path) -> None:
    """promtool checks the scrape configuration.

    The `otlp` section and the out-of-order window are Prometheus 3 settings (otel-lgtm
    0.11.10 runs 3.5); Debian's promtool is older, so it checks the file without them.
    """
    promtool = shutil.which("promtool")
    if promtool is None:
        reason = "promtool not found (Debian package prometheus, scripts/prometheus.sh install)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} — under CI this check may not skip", pytrace=False)
        pytest.skip(reason)
    config = load_yaml(PROMETHEUS_CONFIG)
    assert set(config) == {"global", "scrape_configs", "otlp", "storage"}, "new section: check it"
    config.pop("otlp")
    config["storage"]["tsdb"].pop("out_of_order_time_window")
    checked = tmp_path / "prometheus.yaml"
    checked.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", str(checked)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
