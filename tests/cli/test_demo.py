"""``dunning demo`` against the real stack: four processes started by ``dunning up``.

On Kafka + PostgreSQL the stack gets its own topic prefix and its own database, so it
meets no other test's data. The test reads the demo's summary table and checks each
account's outcome against its story, then asks notify-svc what the on-time payer got.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.support.procs import ROOT
from tests.test_stack import free_base_port

BUS_URL = os.environ.get("DUNNING_BUS_URL", "")
DATABASE_URL = os.environ.get("DUNNING_DATABASE_URL", "")


def _create_database(url: str, name: str, *, drop: bool = False) -> None:
    import asyncpg

    async def run() -> None:
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        try:
            if drop:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def stack_env(tmp_path: Path, unique: str) -> Iterator[dict[str, str]]:
    """The environment of a stack of its own: free ports, temp data, own topics and db."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNNING_")}
    env.update(
        DUNNING_DATA_DIR=str(tmp_path / "var"),
        DUNNING_BASE_PORT=str(free_base_port()),
        COLUMNS="250",  # the summary table on one line per account
    )
    database = ""
    if BUS_URL:
        env.update(DUNNING_BUS_URL=BUS_URL, DUNNING_TOPIC_PREFIX=f"{unique}.")
    if DATABASE_URL:
        # One database for this stack: the four services keep their own schemas in it.
        database = f"cli_{unique}".lower()
        _create_database(DATABASE_URL, database)
        env["DUNNING_DATABASE_URL"] = DATABASE_URL.rsplit("/", 1)[0] + "/" + database
    try:
        yield env
    finally:
        if database:
            _create_database(DATABASE_URL, database, drop=True)


def _up(env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``dunning up``; its output keeps being read (a full pipe would stall the
    services' logging, and with it the services)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dunning_cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    up = threading.Event()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.append(line)
            if "platform up" in line:
                up.set()

    threading.Thread(target=read, args=(proc.stdout,), daemon=True).start()
    deadline = time.monotonic() + 180
    while not up.wait(0.5) and time.monotonic() < deadline and proc.poll() is None:
        pass
    if not up.is_set():
        proc.kill()
        raise AssertionError("dunning up did not come up:\n" + "".join(lines[-40:]))
    return proc, lines


def _rows(output: str) -> dict[str, dict[str, str]]:
    """The summary table's rows by account kind (``never-pays``), cells by column."""
    columns = ["account", "story", "stage", "notices", "fees", "handoff", "open"]
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == len(columns) and "-" in cells[0] and cells[0] != "account":
            row = dict(zip(columns, cells, strict=True))
            rows[row["account"].rsplit("-", 1)[0].lower()] = row
    return rows


def _get(url: str, key: str) -> dict[str, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
        result: dict[str, object] = json.loads(resp.read())
        return result


def test_demo_tells_each_accounts_story(stack_env: dict[str, str]) -> None:
    proc, started = _up(stack_env)
    try:
        head = "".join(started)
        assert "using the manual clock" in head and "DUNNING_CLOCK=system" in head
        demo = subprocess.run(
            [sys.executable, "-m", "dunning_cli", "demo"],
            env=stack_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if demo.returncode != 0:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
            stack_output = "".join(started[-60:])
            raise AssertionError(demo.stdout + demo.stderr + "\nstack:\n" + stack_output)
        rows = _rows(demo.stdout)
        assert len(rows) == 8, demo.stdout
        # Paid in the end, one way or another: back to current, nothing open.
        for kind in ("on-time", "late-partial", "dispute", "promise-kept"):
            assert rows[kind]["stage"] == "current", rows[kind]
            assert rows[kind]["open"] == "0", rows[kind]
            assert rows[kind]["handoff"] == "-", rows[kind]
        # The on-time payer had its reminder and nothing after it.
        assert rows["on-time"]["notices"] == "email 1", rows["on-time"]
        # Never paid: the whole ladder, the SMS and the call task, the fee, the handoff.
        for kind in ("never-pays", "promise-broken"):
            assert rows[kind]["stage"] == "collections", rows[kind]
            assert rows[kind]["handoff"] == "requested", rows[kind]
            assert "sms 1" in rows[kind]["notices"] and "task 1" in rows[kind]["notices"]
            assert rows[kind]["fees"] != "-", rows[kind]
        # The missed installment put the plan's account back on the ladder, past the fee.
        assert rows["plan-missed"]["stage"] in ("final_notice", "collections"), rows
        assert rows["plan-missed"]["fees"] != "-", rows["plan-missed"]
        # Strategic: a slower ladder, no fee and no handoff without a manual approval.
        strategic = rows["strategic"]
        assert strategic["stage"] not in ("current", "final_notice", "collections"), strategic
        assert strategic["handoff"] == "-" and strategic["fees"] == "-", strategic
        assert strategic["open"] == "5000.00 EUR", strategic
        # Where to look: the timeline answers, and the trace id is a W3C one.
        timeline_url = next(
            line.split("timeline: ")[1] for line in demo.stdout.splitlines() if "timeline: " in line
        )
        timeline = _get(timeline_url.strip(), "demo-key")
        assert timeline["items"], timeline
        trace = next(line for line in demo.stdout.splitlines() if "trace of the first" in line)
        assert len(trace.rsplit(" ", 1)[1]) == 32
        # notify-svc agrees: the on-time payer never got an overdue notice.
        notify = f"http://127.0.0.1:{int(stack_env['DUNNING_BASE_PORT']) + 3}"
        account = rows["on-time"]["account"]
        notices = _get(f"{notify}/v1/notifications?account_id={account}", "demo-key")
        assert [n["stage"] for n in notices["items"]] == ["reminder"]  # type: ignore[index, union-attr]
        # And status sees four ready services with their work done.
        status = subprocess.run(
            [sys.executable, "-m", "dunning_cli", "status"],
            env=stack_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        ready = [line for line in status.stdout.splitlines() if "│ ready" in line]
        assert len(ready) == 4, status.stdout
        if not BUS_URL and "DUNNING_SMTP_URL" not in stack_env:
            mails = list(Path(stack_env["DUNNING_DATA_DIR"]).glob("outbox/email/demo/**/*.eml"))
            assert mails, "no .eml file written"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
            assert proc.returncode == 0, "".join(started[-60:])
