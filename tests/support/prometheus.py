"""A real Prometheus server for tests: scrape given targets, query the result.

Usage (the services under test serve ``/metrics`` on ``host:port``)::

    with Prometheus.scraping({"dunning-svc": ["127.0.0.1:8003"]}, tmp_path) as prometheus:
        samples = prometheus.wait_for_series('dunning_accounts{stage="current"}')
        assert samples[0].value == 3
        more = prometheus.query("sum(rate(dunning_events_consumed_total[1m]))")

* ``Prometheus.scraping(targets, workdir)`` starts Debian's ``prometheus`` on a free
  loopback port with a generated config: one job per key of ``targets`` (its name), each
  target scraped every second; storage in ``workdir``. It stops the server on exit.
* ``query(promql)`` runs an instant query (``/api/v1/query``) and returns its samples;
  ``wait_for_series(promql, check)`` polls it (bounded) until ``check(samples)`` holds,
  by default until there is at least one sample, and fails naming the query otherwise.
  Both block; ``query_async`` and ``wait_for_series_async`` are the same for a test whose
  own event loop runs the services being scraped (uvicorn in-process).
* ``require_prometheus()`` gives the binary's path; without one the test skips, or fails
  under ``CI=true`` (``scripts/prometheus.sh install`` installs it).

Prometheus adds ``job`` and ``instance`` labels to every series it scrapes.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ports import free_port

#: How long a query may take to show what a test waits for: several scrapes and refreshes.
WAIT_S = 60.0


def require_prometheus() -> str:
    """The ``prometheus`` binary; skips (fails under CI) when it is not installed."""
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
    )
    if found is None:
        reason = "no prometheus binary (run `scripts/prometheus.sh install` as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} — under CI this test may not skip", pytrace=False)
        pytest.skip(reason)
    return found


@dataclass(frozen=True)
class Sample:
    """One series of an instant query's result: its labels and its value."""

    labels: dict[str, str]
    value: float


def scrape_config(targets: Mapping[str, Sequence[str]], interval_s: int = 1) -> str:
    """A Prometheus configuration scraping each job's ``host:port`` targets (JSON is YAML)."""
    every = f"{interval_s}s"
    config = {
        "global": {"scrape_interval": every, "scrape_timeout": every, "evaluation_interval": every},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
            for job, addresses in targets.items()
        ],
    }
    return json.dumps(config, indent=2)


class Prometheus:
    """A Prometheus server started by a test; see the module's docstring."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        #: Base URL of its HTTP API, e.g. http://127.0.0.1:40123
        self.url = url
        self.log = log

    @classmethod
    @contextmanager
    def scraping(
        cls, targets: Mapping[str, Sequence[str]], workdir: Path, *, start_timeout_s: float = 30
    ) -> Iterator[Prometheus]:
        """Run Prometheus scraping ``targets`` ({job: ["host:port", ...]}) every second,
        its files under ``workdir``, until the block ends."""
        binary = require_prometheus()
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(scrape_config(targets))
        port = free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        server = cls(process, f"http://127.0.0.1:{port}", log)
        try:
            server._wait_ready(start_timeout_s)
            yield server
        finally:
            server.stop()

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"prometheus not ready within {timeout_s} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def query(self, promql: str) -> list[Sample]:
        """The samples of an instant query of ``promql`` now (a vector or a scalar)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        return _samples(promql, response)

    async def query_async(self, promql: str) -> list[Sample]:
        """``query`` for a test whose event loop serves the scraped services."""
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{self.url}/api/v1/query", params={"query": promql})
        return _samples(promql, response)

    def targets_health(self) -> dict[str, str]:
        """Each scrape target's health ("up", "down", "unknown") and last error, by URL."""
        body = httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()
        return {
            t["scrapeUrl"]: f"{t['health']} {t.get('lastError', '')}".strip()
            for t in body["data"]["activeTargets"]
        }

    def wait_for_series(
        self,
        promql: str,
        check: Callable[[list[Sample]], bool] = bool,
        *,
        timeout_s: float = WAIT_S,
    ) -> list[Sample]:
        """Poll ``promql`` until ``check(samples)`` holds (default: any sample); returns
        them. Fails after ``timeout_s`` with the last result and the targets' health."""
        deadline = time.monotonic() + timeout_s
        while True:
            samples = self.query(promql)
            if check(samples):
                return samples
            if time.monotonic() > deadline:
                self._fail(promql, timeout_s, samples)
            time.sleep(0.25)

    async def wait_for_series_async(
        self,
        promql: str,
        check: Callable[[list[Sample]], bool] = bool,
        *,
        timeout_s: float = WAIT_S,
    ) -> list[Sample]:
        """``wait_for_series`` for a test whose event loop serves the scraped services
        (a blocking wait would stop them from answering the scrapes)."""
        deadline = time.monotonic() + timeout_s
        while True:
            samples = await self.query_async(promql)
            if check(samples):
                return samples
            if time.monotonic() > deadline:
                self._fail(promql, timeout_s, samples)
            await asyncio.sleep(0.25)

    def _fail(self, promql: str, timeout_s: float, samples: list[Sample]) -> None:
        pytest.fail(
            f"{promql!r} did not match within {timeout_s} s; last result {samples}; "
            f"targets {self.targets_health()}",
            pytrace=False,
        )


def _samples(promql: str, response: httpx.Response) -> list[Sample]:
    """The samples of a ``/api/v1/query`` answer."""
    body: dict[str, Any] = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise AssertionError(f"query {promql!r} failed: {response.status_code} {body}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return [Sample({}, float(data["result"][1]))]
    return [Sample(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]
