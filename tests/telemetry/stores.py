"""The trace test's real components as child processes: Zipkin (the trace store, its
Maven Central jar run by scripts/zipkin.sh) and the OpenTelemetry Collector built by
scripts/otelcol.sh from deploy/otelcol/manifest.yaml, with deploy/otelcol/config.yaml.

Missing tools skip the test locally and fail it under CI=true (tests/support/servers.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ports import free_port
from tests.telemetry.spans import Node

ROOT = Path(__file__).resolve().parents[2]
OTELCOL = ROOT / ".tools" / "otelcol"
CONFIG = ROOT / "deploy" / "otelcol" / "config.yaml"


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} — under CI the trace test may not skip", pytrace=False)
    pytest.skip(reason)


def _zipkin_jar() -> str:
    done = subprocess.run(
        [str(ROOT / "scripts" / "zipkin.sh"), "path"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        _missing("Zipkin is not fetched (run scripts/zipkin.sh fetch)")
    return done.stdout.strip()


def require_tools() -> None:
    """Skip (fail under CI) unless the collector is built and Zipkin fetched, with Java."""
    if not OTELCOL.exists():
        _missing("the OpenTelemetry Collector is not built (run scripts/otelcol.sh build)")
    _zipkin_jar()
    if subprocess.run(["java", "-version"], capture_output=True, check=False).returncode != 0:
        _missing("no Java for Zipkin (Debian: openjdk-17-jre-headless)")


@dataclass
class Stores:
    """A running Zipkin and collector; ``otlp_endpoint`` is what services export to."""

    otlp_endpoint: str
    zipkin_url: str
    prometheus_url: str
    file_path: Path

    def zipkin(self, path: str, **params: Any) -> Any:
        """GET Zipkin's API (``/api/v2/...``) as JSON."""
        response = httpx.get(f"{self.zipkin_url}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def zipkin_nodes(self, services: list[str], limit: int = 1000) -> list[Node]:
        """Every span Zipkin holds for ``services`` (the last hour), as nodes. Zipkin's
        v2 model has no links; the collector's Zipkin exporter keeps each one as a tag
        ``otlp.link.<n>`` = ``<trace id>|<span id>|<tracestate>|<attributes>|<dropped>``,
        read back here."""
        seen: dict[str, Node] = {}
        for service in services:
            end = int(time.time() * 1000) + 60_000
            for spans in self.zipkin(
                "/api/v2/traces", serviceName=service, limit=limit, endTs=end, lookback=3_600_000
            ):
                for span in spans:
                    seen[span["id"]] = Node(
                        trace_id=span["traceId"],
                        span_id=span["id"],
                        parent_id=span.get("parentId"),
                        name=span.get("name", ""),
                        service=span.get("localEndpoint", {}).get("serviceName", ""),
                        attributes=span.get("tags", {}),
                        links=[
                            value.split("|")[1]
                            for key, value in span.get("tags", {}).items()
                            if key.startswith("otlp.link.")
                        ],
                    )
        return list(seen.values())

    def file_links(self) -> dict[str, list[str]]:
        """Span id -> the span ids it links to, from the collector's file exporter (OTLP
        JSON, one export request per line; ids as hex)."""
        links: dict[str, list[str]] = {}
        if not self.file_path.exists():
            return links
        for line in self.file_path.read_text().splitlines():
            if not line.strip():
                continue
            for resource in json.loads(line).get("resourceSpans", []):
                for scope in resource.get("scopeSpans", []):
                    for span in scope.get("spans", []):
                        linked = [link["spanId"] for link in span.get("links", [])]
                        if linked:
                            links[span["spanId"]] = linked
        return links


def _wait(what: str, proc: subprocess.Popen[bytes], ready: Any, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        with suppress(httpx.HTTPError, OSError):
            if ready():
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_stores(workdir: Path) -> Iterator[Stores]:
    """Start Zipkin, then the collector exporting to it, on free loopback ports; stop both."""
    require_tools()
    zipkin_port, otlp_port, prometheus_port = free_port(), free_port(), free_port()
    file_path = workdir / "otelcol-spans.json"
    zipkin_log, otelcol_log = workdir / "zipkin.log", workdir / "otelcol.log"
    zipkin = subprocess.Popen(
        [str(ROOT / "scripts" / "zipkin.sh"), "run", str(zipkin_port)],
        stdout=zipkin_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        zipkin_url = f"http://127.0.0.1:{zipkin_port}"
        _wait(
            "Zipkin",
            zipkin,
            lambda: httpx.get(f"{zipkin_url}/health", timeout=2).status_code == 200,
            zipkin_log,
            120,
        )
        env = {
            **os.environ,
            "OTELCOL_OTLP_HTTP_PORT": str(otlp_port),
            "OTELCOL_PROMETHEUS_PORT": str(prometheus_port),
            "OTELCOL_FILE_PATH": str(file_path),
            "ZIPKIN_PORT": str(zipkin_port),
        }
        otelcol = subprocess.Popen(
            [str(OTELCOL), f"--config={CONFIG}"],
            env=env,
            stdout=otelcol_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            otlp = f"http://127.0.0.1:{otlp_port}"
            # An empty export answers 200 once the receiver listens.
            _wait(
                "the collector",
                otelcol,
                lambda: httpx.post(f"{otlp}/v1/traces", json={}, timeout=2).status_code == 200,
                otelcol_log,
                60,
            )
            yield Stores(otlp, zipkin_url, f"http://127.0.0.1:{prometheus_port}", file_path)
        finally:
            _stop(otelcol)
    finally:
        _stop(zipkin)
