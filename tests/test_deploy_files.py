"""The deployment files, checked without Docker or a cluster.

No Docker engine runs where the suite runs, so docker-compose.yml, the Dockerfile
and deploy/k8s cannot be started here. Instead these tests read them: every service
is built from its own console script, configured, health-checked and wired to Kafka
and PostgreSQL; every ``DUNNING_*`` name they set is a setting the code reads
(``setting_env_names()``); the values they set pass the services' own validation;
every kustomization lists files that exist. With kubectl or kustomize on the PATH the
overlays are also rendered and checked as a cluster would receive them.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from dunning_cli.platform import DEFAULT_PORTS
from dunning_runtime.app import ServiceSpec
from dunning_runtime.settings import load_settings, setting_env_names
from dunning_svc.main import SPEC as DUNNING
from invoice_svc.main import SPEC as INVOICE
from notify_svc.main import SPEC as NOTIFY
from payment_svc.main import SPEC as PAYMENT

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(DEFAULT_PORTS)
#: Each service's spec: its settings type says which DUNNING_* names it reads.
SPECS: dict[str, ServiceSpec] = {s.name: s for s in (INVOICE, PAYMENT, DUNNING, NOTIFY)}
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_OBSERVABILITY = ROOT / "docker-compose.observability.yml"
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production")

#: Settings every service container must be given explicitly.
REQUIRED_ENV = (
    "DUNNING_BUS_URL",
    "DUNNING_DATABASE_URL",
    "DUNNING_API_KEYS",
    "DUNNING_OTLP_ENDPOINT",
    "DUNNING_PORT",
    "DUNNING_HOST",
    "DUNNING_LOG_LEVEL",
)
SECRET_SETTINGS = (
    "DUNNING_API_KEYS",
    "DUNNING_DATABASE_URL",
    "DUNNING_ADMIN_KEY",
    "DUNNING_KEY_PEPPER",
)
#: Containers must listen on every interface to be reachable from outside.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
DUNNING_NAME = re.compile(r"\bDUNNING_[A-Z0-9_]+\b")
COMPOSE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


# --- helpers -------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose_services(path: Path = COMPOSE) -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(path)["services"]
    return services


def interpolate(value: Any) -> str:
    """A compose value as the service sees it when the caller's shell sets nothing."""
    return COMPOSE_VARIABLE.sub(lambda m: m.group(2) or "", str(value))


def unknown_setting_names(text: str) -> list[tuple[int, str]]:
    """(line, name) of every DUNNING_* name in ``text`` that no setting reads."""
    known = setting_env_names()
    return [
        (number, name)
        for number, line in enumerate(text.splitlines(), start=1)
        for name in DUNNING_NAME.findall(line)
        if name not in known
    ]


def deploy_files() -> list[Path]:
    files = [COMPOSE, COMPOSE_OBSERVABILITY, DOCKERFILE, *sorted(K8S.rglob("*.yaml"))]
    return [path for path in files if path.exists()]


def k8s_documents(directory: Path = K8S) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(directory.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def base_documents(kind: str) -> dict[str, dict[str, Any]]:
    """Documents of ``kind`` in deploy/k8s/base, by name."""
    return {
        doc["metadata"]["name"]: doc
        for _, doc in k8s_documents(K8S / "base")
        if doc.get("kind") == kind
    }


def secret_values(secret: dict[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    values.update(secret.get("stringData") or {})
    return values


def container_env(
    container: dict[str, Any], config_maps: dict[str, Any], secrets: dict[str, Any]
) -> dict[str, str]:
    """The environment a container starts with: envFrom sources, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in config_maps, f"{container['name']} reads missing ConfigMap {name}"
            env.update(config_maps[name].get("data") or {})
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            assert name in secrets, f"{container['name']} reads missing Secret {name}"
            env.update(secret_values(secrets[name]))
    env.update(
        {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    )
    return env


def assert_valid_settings(
    service: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Start-up validation of ``service`` with exactly ``env``: what the container would do."""
    for name in setting_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        settings = load_settings(SPECS[service])
    except SystemExit as exc:
        pytest.fail(f"{where}: {exc}")
    assert settings.port == DEFAULT_PORTS[service], f"{where}: {service} port {settings.port}"
    assert settings.host == ALL_INTERFACES, f"{where}: {service} binds {settings.host}"
    assert settings.kafka_bootstrap, f"{where}: {service} is not on Kafka"
    assert settings.effective_schema == service.replace("-", "_"), where
    assert settings.api_keys, f"{where}: {service} has no API keys"


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def kustomize_build(overlay: str) -> list[dict[str, Any]]:
    """The rendered overlay, or a skip when neither kubectl nor kustomize is installed."""
    directory = str(K8S / "overlays" / overlay)
    if kustomize := shutil.which("kustomize"):
        command = [kustomize, "build", directory]
    elif kubectl := shutil.which("kubectl"):
        command = [kubectl, "kustomize", directory]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"kustomize build {overlay} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# --- the name check itself ------------------------------------------------------------


def test_the_name_check_catches_a_name_no_setting_reads() -> None:
    text = "DUNNING_BUS_URL: kafka://kafka:9092\nDUNNING_BUS_ULR: kafka://kafka:9092\n"
    assert unknown_setting_names(text) == [(2, "DUNNING_BUS_ULR")]
    assert {"DUNNING_BUS_URL", "DUNNING_DATABASE_URL", "DUNNING_PORT"} <= setting_env_names()


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dunning_name_in_deploy_files_is_a_setting(path: Path) -> None:
    """Compose files, the Dockerfile, and every k8s file, patches and comments included."""
    unknown = unknown_setting_names(path.read_text())
    assert not unknown, "\n".join(
        f"{path.relative_to(ROOT)}:{line}: {name} is not a setting the code reads "
        f"(dunning_runtime.settings.setting_env_names())"
        for line, name in unknown
    )


def test_deploy_files_set_the_essential_settings() -> None:
    """Guards the check above against passing because a file set nothing at all."""
    texts = {path.name: path.read_text() for path in deploy_files()}
    for name in REQUIRED_ENV:
        assert name in texts["docker-compose.yml"], f"docker-compose.yml never sets {name}"
    k8s = "".join(p.read_text() for p in (K8S / "base").glob("*.yaml"))
    for name in REQUIRED_ENV:
        assert name in k8s, f"deploy/k8s/base never sets {name}"


# --- docker-compose.yml -----------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_compose_service_is_built_configured_and_health_checked(name: str) -> None:
    service = compose_services()[name]
    port = DEFAULT_PORTS[name]
    build = service["build"]
    assert build["context"] == ".", f"{name}: the build context must be the workspace root"
    assert (ROOT / build.get("dockerfile", "Dockerfile")).is_file()
    assert build["args"] == {"SERVICE": name, "PORT": str(port)}
    env = service["environment"]
    missing = [key for key in REQUIRED_ENV if key not in env]
    assert not missing, f"{name}: environment lacks {missing}"
    assert env["DUNNING_BUS_URL"] == "kafka://kafka:9092"
    assert urlsplit(env["DUNNING_DATABASE_URL"]).hostname == "postgres"
    assert env["DUNNING_HOST"] == ALL_INTERFACES
    assert str(env["DUNNING_PORT"]) == str(port)
    assert f"{port}:{port}" in service["ports"]
    check = service["healthcheck"]
    assert not check.get("disable"), f"{name}: health check disabled"
    assert "/readyz" in " ".join(check["test"]), f"{name}: health check must hit /readyz"
    assert "DUNNING_PORT" in " ".join(check["test"]) or str(port) in " ".join(check["test"])
    for backend in ("kafka", "postgres"):
        assert service["depends_on"][backend] == {"condition": "service_healthy"}, (
            f"{name} must wait for {backend} to be healthy"
        )


@pytest.mark.parametrize("name", SERVICES)
def test_compose_environment_passes_the_service_settings_validation(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        key: interpolate(value) for key, value in compose_services()[name]["environment"].items()
    }
    assert_valid_settings(name, env, monkeypatch, f"docker-compose.yml {name}")


def test_compose_runs_kraft_kafka_and_postgres_with_health_checks() -> None:
    services = compose_services()
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    major, minor = (int(part) for part in kafka["image"].split(":")[1].split(".")[:2])
    assert (major, minor) >= (4, 1), kafka["image"]
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert str(env["KAFKA_NODE_ID"]) == "1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@")
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    assert str(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == "1"
    assert str(env["KAFKA_NUM_PARTITIONS"]) == "8"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16-alpine"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    # The credentials the services use are the ones the server is created with.
    url = urlsplit(services["invoice-svc"]["environment"]["DUNNING_DATABASE_URL"])
    pg_env = postgres["environment"]
    assert (url.username, url.password, url.path.lstrip("/")) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
        pg_env["POSTGRES_DB"],
    )


def test_notify_svc_sends_mail_to_mailpit() -> None:
    services = compose_services()
    assert services["notify-svc"]["environment"]["DUNNING_SMTP_URL"] == "smtp://mailpit:1025"
    assert services["mailpit"]["image"].startswith("axllent/mailpit")
    assert "mailpit" in services["notify-svc"]["depends_on"]


def test_observability_layer_only_adds_to_the_base_file() -> None:
    base = compose_services()
    layer = compose_services(COMPOSE_OBSERVABILITY)
    collectors = [name for name in layer if name not in base]
    assert collectors, "the observability layer adds no collector"
    hosts = set(collectors)
    for name in SERVICES:
        endpoint = layer[name]["environment"]["DUNNING_OTLP_ENDPOINT"]
        assert urlsplit(endpoint).hostname in hosts, f"{name} exports to {endpoint}"
    # The base file stands alone: nothing in it needs the layer's services.
    for name, service in base.items():
        assert not set(service.get("depends_on", {})) & hosts, name


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_builds_a_small_non_root_image_of_one_service() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    args: dict[str, str] = {}
    for keyword, arg in instructions:
        if keyword == "ARG":
            name, _, default = arg.partition("=")
            args[name] = default
    stages = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    for start in stages:
        image = instructions[start][1].split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        assert image == "python:3.12-slim", f"stage from {image}"
    runs = " ".join(arg for keyword, arg in instructions if keyword == "RUN")
    assert re.search(r"pip install [^;&]*\buv\b", runs), "uv must come from PyPI"
    assert re.search(r"uv sync --frozen --no-dev .*--package \"?\$\{?SERVICE\b", runs)
    copies = [arg for keyword, arg in instructions if keyword == "COPY"]
    assert any("pyproject.toml" in c and "uv.lock*" in c for c in copies), copies
    assert any(c.startswith("libs/") for c in copies) and any(
        c.startswith("services/") for c in copies
    )
    final = instructions[stages[-1] :]
    users = [arg for keyword, arg in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "must run as non-root"
    assert [arg for keyword, arg in final if keyword == "EXPOSE"] == ["$PORT"]
    env = " ".join(arg for keyword, arg in final if keyword == "ENV")
    assert "DUNNING_HOST=0.0.0.0" in env and "DUNNING_PORT=$PORT" in env
    [healthcheck] = [arg for keyword, arg in final if keyword == "HEALTHCHECK"]
    assert "urllib" in healthcheck and "/healthz" in healthcheck
    [command] = [arg for keyword, arg in final if keyword == "CMD"]
    assert "$SERVICE" in command, "CMD must run the service's console script"
    assert {"SERVICE", "PORT"} <= set(args)


@pytest.mark.parametrize("name", SERVICES)
def test_each_image_runs_a_console_script_the_service_declares(name: str) -> None:
    """The compose build arg names the script the Dockerfile runs; it must exist."""
    script = compose_services()[name]["build"]["args"]["SERVICE"]
    project = tomllib.loads((ROOT / "services" / name / "pyproject.toml").read_text())
    scripts = project["project"].get("scripts", {})
    assert script in scripts, f"services/{name}/pyproject.toml has no console script {script}"
    module, _, function = scripts[script].partition(":")
    source = ROOT / "services" / name / "src" / Path(*module.split("."))
    assert source.with_suffix(".py").is_file() or (source / "__init__.py").is_file(), (
        f"{script} points at {module}, which does not exist"
    )
    assert function, f"{script} names no function"


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = set((ROOT / ".dockerignore").read_text().split())
    for required in (".venv", "var", ".git", ".tools", ".pytest_cache", ".mypy_cache"):
        assert required in patterns, f".dockerignore must exclude {required}"
    assert not {"libs", "services", "pyproject.toml", "uv.lock"} & patterns


# --- deploy/k8s -----------------------------------------------------------------------------


def test_every_k8s_file_parses_into_kubernetes_objects() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 8, files
    for path in files:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert documents, f"{path} is empty"
        for document in documents:
            assert {"apiVersion", "kind"} <= set(document), f"{path}: {document}"


def test_kustomizations_list_files_that_exist() -> None:
    kustomizations = sorted(K8S.rglob("kustomization.yaml"))
    assert {p.parent.relative_to(K8S).as_posix() for p in kustomizations} == {
        "base",
        "overlays/dev",
        "overlays/production",
    }
    for path in kustomizations:
        spec = load_yaml(path)
        listed = [*spec.get("resources", []), *spec.get("components", [])]
        assert listed, f"{path} lists no resources"
        listed += [patch["path"] for patch in spec.get("patches", []) if "path" in patch]
        for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
            listed += [f.split("=", 1)[-1] for f in generator.get("files", [])]
        for entry in listed:
            target = path.parent / entry
            assert target.is_file() or (target / "kustomization.yaml").is_file(), (
                f"{path.relative_to(ROOT)} lists {entry}, which does not exist"
            )
        # Every file next to a kustomization is used by it.
        for sibling in path.parent.glob("*.yaml"):
            assert sibling == path or sibling.name in listed, f"{sibling} is not in {path}"


@pytest.mark.parametrize("name", SERVICES)
def test_k8s_base_deploys_each_service(name: str) -> None:
    port = DEFAULT_PORTS[name]
    deployment = base_documents("Deployment")[name]
    service = base_documents("Service")[name]
    pod = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    [container] = pod["spec"]["containers"]
    assert container["image"].rsplit(":", 1)[0].endswith(f"/{name}")
    [container_port] = container["ports"]
    assert container_port["containerPort"] == port
    assert service["spec"]["ports"][0]["port"] == port
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, f"{name} {probe}"
        assert get["port"] in (port, container_port.get("name")), f"{name} {probe} port"
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "DUNNING_PORT", "value": str(port)} in container["env"]


@pytest.mark.parametrize("name", SERVICES)
def test_k8s_base_migrates_in_a_job_and_autoscales_up_to_the_partitions(name: str) -> None:
    """Replicas never race on migrations: they start with DUNNING_MIGRATE=false and a Job
    of the same image and settings runs `<service> migrate`. The autoscaler stops at the
    partition count: a consumer replica above it gets no partition."""
    [container] = base_documents("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    assert {"name": "DUNNING_MIGRATE", "value": "false"} in container["env"]
    job = base_documents("Job")[f"{name}-migrate"]
    pod = job["spec"]["template"]
    [migrate] = pod["spec"]["containers"]
    assert migrate["image"] == container["image"]
    assert migrate["command"] == [name, "migrate"]
    assert migrate["envFrom"] == container["envFrom"]
    assert pod["spec"]["restartPolicy"] in ("OnFailure", "Never")
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # Not selected by the service's Service or PodDisruptionBudget.
    service = base_documents("Service")[name]
    assert not service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    autoscaler = base_documents("HorizontalPodAutoscaler")[name]
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", name)
    partitions = int(
        base_documents("ConfigMap")["dunning-config"]["data"]["DUNNING_BUS_PARTITIONS"]
    )
    assert autoscaler["spec"]["maxReplicas"] == partitions
    assert 1 <= autoscaler["spec"]["minReplicas"] <= partitions


def _kubernetes_validate(paths: list[Path]) -> None:
    """``kubernetes-validate --strict`` on ``paths``: every field known to Kubernetes'
    schemas, offline (the schemas ship with the package)."""
    tool = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).with_name("kubernetes-validate")
    )
    result = subprocess.run(
        [tool, "--strict", "--quiet", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"kubernetes-validate --strict:\n{result.stdout}{result.stderr}"


def test_k8s_manifests_pass_kubernetes_validate_strict() -> None:
    manifests = [p for p in sorted(K8S.rglob("*.yaml")) if p.name != "kustomization.yaml"]
    _kubernetes_validate(manifests)


def test_kubernetes_validate_strict_refuses_an_unknown_field(tmp_path: Path) -> None:
    """Guards the check above against passing because it checked nothing."""
    job = base_documents("Job")["dunning-svc-migrate"]
    job["spec"]["backofLimit"] = 3
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    with pytest.raises(AssertionError, match="backofLimit"):
        _kubernetes_validate([path])


def test_k8s_secrets_hold_the_secret_settings_and_config_maps_do_not() -> None:
    secrets = {k for s in base_documents("Secret").values() for k in secret_values(s)}
    config = {k for c in base_documents("ConfigMap").values() for k in c.get("data") or {}}
    for name in SECRET_SETTINGS:
        assert name in secrets, f"{name} belongs in a Secret"
        assert name not in config, f"{name} must not be in a ConfigMap"


@pytest.mark.parametrize("name", SERVICES)
def test_k8s_base_environment_passes_the_service_settings_validation(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    [container] = base_documents("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    env = container_env(container, base_documents("ConfigMap"), base_documents("Secret"))
    missing = [key for key in REQUIRED_ENV if key not in env]
    assert not missing, f"k8s {name} lacks {missing}"
    assert_valid_settings(name, env, monkeypatch, f"deploy/k8s/base {name}")


def test_dev_overlay_runs_the_kafka_and_postgres_the_config_points_at() -> None:
    dev = K8S / "overlays" / "dev"
    services = {
        doc["metadata"]["name"]: doc for _, doc in k8s_documents(dev) if doc["kind"] == "Service"
    }
    config = base_documents("ConfigMap")["dunning-config"]["data"]
    database = secret_values(base_documents("Secret")["dunning-secrets"])["DUNNING_DATABASE_URL"]
    for url, default_port in ((config["DUNNING_BUS_URL"], 9092), (database, 5432)):
        host = urlsplit(url).hostname
        port = urlsplit(url).port or default_port
        assert host in services, f"dev has no Service {host} for {url}"
        assert port in [p["port"] for p in services[host]["spec"]["ports"]], url
    replicas = {r["name"]: r["count"] for r in load_yaml(dev / "kustomization.yaml")["replicas"]}
    assert replicas == dict.fromkeys(SERVICES, 1)


def test_production_overlay_runs_three_replicas_behind_disruption_budgets() -> None:
    production = K8S / "overlays" / "production"
    spec = load_yaml(production / "kustomization.yaml")
    replicas = {r["name"]: r["count"] for r in spec["replicas"]}
    assert replicas == dict.fromkeys(SERVICES, 3)
    budgets = [doc for _, doc in k8s_documents(production) if doc["kind"] == "PodDisruptionBudget"]
    deployments = base_documents("Deployment")
    for name in SERVICES:
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert covering, f"no PodDisruptionBudget covers {name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_is_complete_and_valid(
    overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    documents = kustomize_build(overlay)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in documents:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
        assert doc["metadata"].get("namespace"), f"{overlay}: {doc['kind']} has no namespace"
    unknown = unknown_setting_names(yaml.safe_dump_all(documents))
    assert not unknown, f"{overlay} sets {sorted({n for _, n in unknown})}, which no setting reads"
    expected_replicas = {"dev": 1, "production": 3}[overlay]
    for name in SERVICES:
        deployment = by_kind["Deployment"][name]
        assert deployment["spec"]["replicas"] == expected_replicas, f"{overlay} {name}"
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = container_env(container, by_kind["ConfigMap"], by_kind["Secret"])
        assert_valid_settings(name, env, monkeypatch, f"overlays/{overlay} {name}")
    assert set(by_kind["HorizontalPodAutoscaler"]) == set(SERVICES)
    assert set(by_kind["Job"]) == {f"{name}-migrate" for name in SERVICES}
    for name in SERVICES:
        autoscaler = by_kind["HorizontalPodAutoscaler"][name]["spec"]
        assert autoscaler["minReplicas"] == expected_replicas, f"{overlay} {name}"
        [migrate] = by_kind["Job"][f"{name}-migrate"]["spec"]["template"]["spec"]["containers"]
        env = container_env(migrate, by_kind["ConfigMap"], by_kind["Secret"])
        assert_valid_settings(
            name,
            {**env, "DUNNING_PORT": str(DEFAULT_PORTS[name])},
            monkeypatch,
            f"overlays/{overlay} {name}-migrate",
        )
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(yaml.safe_dump_all(documents))
    _kubernetes_validate([rendered])
    if overlay == "dev":
        assert {"kafka", "postgres"} <= set(by_kind["Service"])
    else:
        assert set(SERVICES) <= set(by_kind["PodDisruptionBudget"])


# --- docs ---------------------------------------------------------------------------------


def test_deploy_docs_list_every_setting() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    missing = sorted(name for name in setting_env_names() if f"`{name}`" not in text)
    assert not missing, f"docs/deploy.md does not document {missing}"
