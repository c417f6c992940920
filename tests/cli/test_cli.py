"""The ``dunning`` command's failure paths: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from dunning_cli.clock import parse_duration, parse_instant
from tests.support.procs import ROOT
from tests.test_stack import free_base_port


def dunning(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dunning_cli args`` with only the given DUNNING_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DUNNING_")}
    return subprocess.run(
        [sys.executable, "-m", "dunning_cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dunning: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["clock", "advance", "3x"], "'3x' is not a duration"),
        (["clock", "advance"], "Missing argument 'DURATION'"),
        (["clock", "set", "2026-03-01T09:00"], "has no offset"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (["--base-port", "0", "status"], "--base-port"),
        (["dlq", "list"], "Missing argument 'TOPIC'"),
    ],
)
def test_a_wrong_argument_is_one_line_and_exit_2(args: list[str], said: str) -> None:
    assert said in one_line_error(dunning(*args))


def test_a_bad_setting_is_one_line_naming_the_variable() -> None:
    line = one_line_error(dunning("status", DUNNING_BASE_PORT="eighty"))
    assert "DUNNING_BASE_PORT" in line


def test_an_unreachable_platform_is_one_line_and_exit_2() -> None:
    base = free_base_port()  # nothing listens there
    for args in (["clock", "advance", "1d"], ["clock", "show"], ["status"], ["demo"]):
        line = one_line_error(dunning(*args, DUNNING_BASE_PORT=str(base)))
        assert f"127.0.0.1:{base}" in line, line


def test_plugged_simulate_gets_its_arguments_whole() -> None:
    result = dunning("simulate", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout.lower()


def test_durations_and_instants() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("1w") == timedelta(weeks=1)
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    for bad in ("", "0d", "7", "d", "-1d", "1.5d", "7 days"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_instant("2026-03-01T09:00:00Z").utcoffset() == timedelta(0)
