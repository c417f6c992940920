"""docker-compose.yml, the Dockerfile and deploy/k8s cannot run here (no Docker
engine), so their content is checked: every service is built, configured and
health-checked, and every DUNNING_* name they set is one the code reads."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from dunning_runtime.settings import DEFAULT_PORTS, setting_env_names

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(DEFAULT_PORTS)
K8S = ROOT / "deploy" / "k8s"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def dunning_names(env: dict[str, Any] | list[str]) -> set[str]:
    names = env if isinstance(env, list) else list(env)
    return {n.split("=", 1)[0] for n in names if n.startswith("DUNNING_")}


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_built_configured_and_health_checked(name: str) -> None:
    service = compose()["services"][name]
    assert service["build"] == {"context": ".", "args": {"SERVICE": name}}
    env = service["environment"]
    assert env["DUNNING_BUS_URL"] == "kafka://kafka:9092"
    assert env["DUNNING_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["DUNNING_PORT"] == str(DEFAULT_PORTS[name])
    assert service["ports"] == [f"{DEFAULT_PORTS[name]}:{DEFAULT_PORTS[name]}"]
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert service["depends_on"]["kafka"] == {"condition": "service_healthy"}
    assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_kafka_and_postgres_have_health_checks() -> None:
    services = compose()["services"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("kafka", "postgres"):
        assert services[name]["healthcheck"]["test"], name


def test_compose_env_names_are_settings_the_code_reads() -> None:
    known = setting_env_names()
    for name, service in compose()["services"].items():
        unknown = dunning_names(service.get("environment", {})) - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which no setting reads"


def test_k8s_env_names_are_settings_the_code_reads() -> None:
    known = setting_env_names()
    documents = [d for p in K8S.rglob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    used: set[str] = set()
    for doc in documents:
        if doc.get("kind") in ("ConfigMap", "Secret"):
            used |= dunning_names(doc.get("data") or doc.get("stringData") or {})
        if doc.get("kind") == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                used |= dunning_names([e["name"] for e in container.get("env", [])])
    assert used, "no DUNNING_* settings found in deploy/k8s"
    assert not used - known, f"deploy/k8s sets {sorted(used - known)}, which no setting reads"


def test_kustomizations_list_files_that_exist() -> None:
    kustomizations = list(K8S.rglob("kustomization.yaml"))
    assert len(kustomizations) == 3
    for path in kustomizations:
        for resource in yaml.safe_load(path.read_text()).get("resources", []):
            assert (path.parent / resource).exists(), f"{path} lists missing {resource}"


def test_each_k8s_service_has_probes_and_the_right_port() -> None:
    for name in SERVICES:
        deployment, service = yaml.safe_load_all((K8S / "base" / f"{name}.yaml").read_text())
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["ports"][0]["containerPort"] == DEFAULT_PORTS[name]
        assert {"name": "DUNNING_PORT", "value": str(DEFAULT_PORTS[name])} in container["env"]
        assert service["spec"]["ports"][0]["port"] == DEFAULT_PORTS[name]


def test_dockerfile_runs_the_service_console_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"uv sync --frozen --no-dev .*--package \"\$SERVICE\"", dockerfile)
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    for name in SERVICES:
        project = tomllib.loads((ROOT / "services" / name / "pyproject.toml").read_text())
        assert name in project["project"]["scripts"], f"{name} has no console script {name}"
