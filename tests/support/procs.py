"""Child processes for crash tests: start, wait for a line, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dunning_runtime.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: ServiceSettings) -> dict[str, str]:
    """The environment that makes a child process read the same settings."""
    env = dict(os.environ)
    env.update(
        DUNNING_DATA_DIR=str(settings.data_dir),
        DUNNING_BUS_URL=settings.bus_url,
        DUNNING_TOPIC_PREFIX=settings.topic_prefix,
        DUNNING_DATABASE_URL=settings.effective_database_url,
        DUNNING_DATABASE_SCHEMA=settings.effective_schema or "",
        DUNNING_BUS_PARTITIONS=str(settings.bus_partitions),
        DUNNING_CONSUMER_BATCH_SIZE=str(settings.consumer_batch_size),
        PYTHONPATH=str(ROOT),
    )
    return env


def start(
    module: str, *args: str, env: dict[str, str], ready: str = "ready", timeout: float = 60
) -> subprocess.Popen[str]:
    """Start ``python -m module args`` and wait until it prints ``ready``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"{module} exited with {proc.wait()} before saying {ready!r}")
        if line.strip() == ready:
            return proc
    proc.kill()
    raise AssertionError(f"{module} did not say {ready!r} within {timeout}s")


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL: no cleanup, no flush, like a crashed container."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)
