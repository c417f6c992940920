"""``make run``: four services up on the embedded defaults, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.ports import free_port_block
from tests.support.procs import ROOT


def free_base_port() -> int:
    """A base port whose next three ports are free too."""
    return free_port_block(4)


def start_stack(
    data_dir: Path, base: int, *, from_setting: bool = False
) -> tuple[subprocess.Popen[str], str]:
    """Start ``make run``'s stack with ports from ``--base-port`` or ``DUNNING_BASE_PORT``;
    returns the process and what it printed until it was up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNNING_")}
    env.update(DUNNING_DATA_DIR=str(data_dir))  # embedded defaults: no bus or database URL
    args = ["--base-port", str(base)]
    if from_setting:
        env["DUNNING_BASE_PORT"] = str(base)
        args = []
    proc = subprocess.Popen(
        [sys.executable, "-m", "dunning_cli.stack", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "platform up" in line:
            return proc, "".join(lines)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("the stack did not come up:\n" + "".join(lines[-40:]))


def get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
        return resp.status, json.loads(resp.read())


def test_stack_starts_four_services_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    base = free_base_port()
    for attempt in range(2):  # the second start proves the data in var/ is reused
        # The first start takes its ports from --base-port, the second from DUNNING_BASE_PORT.
        proc, started = start_stack(tmp_path, base, from_setting=attempt == 1)
        try:
            titles = set()
            for port in range(base, base + 4):
                assert get(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
                status, ready = get(f"http://127.0.0.1:{port}/readyz")
                assert status == 200 and ready["status"] == "ready"
                _, spec = get(f"http://127.0.0.1:{port}/openapi.json")
                titles.add(spec["info"]["title"])  # type: ignore[index]
            assert titles == {
                "Invoice service",
                "Payment service",
                "Dunning service",
                "Notification service",
            }
        finally:
            proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate(timeout=60)
            output = started + output
        assert proc.returncode == 0, output
        assert "stopped." in output
        assert "using the development admin key (dev-admin-key)" in output
        # Without DUNNING_CLOCK the stack runs on the manual clock, and says how to leave it.
        assert "DUNNING_CLOCK not set: using the manual clock" in output
        assert "DUNNING_CLOCK=system gives wall-clock time" in output
        # Each service's log lines (JSON by default) name it, so the four are told apart.
        for name in ("invoice-svc", "payment-svc", "dunning-svc", "notify-svc"):
            assert f'"level": "INFO", "service": "{name}"' in output, f"no log line names {name}"
        stored = sorted(p.name for p in tmp_path.glob("*.sqlite"))
        assert stored == [
            "bus.sqlite",
            "dunning-svc.sqlite",
            "invoice-svc.sqlite",
            "notify-svc.sqlite",
            "payment-svc.sqlite",
        ], (attempt, stored)
