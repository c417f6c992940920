"""The policy simulator: the committed example ledger and its expected output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from dunning_svc import simulator
from dunning_svc.policy import shipped_policy

EXAMPLES = Path(__file__).parents[1] / "examples"
STANDARD = Path(simulator.__file__).parent / "policies" / "standard.yaml"
ARGS = ["--policy", str(STANDARD), "--ledger", str(EXAMPLES / "ledger.csv"), "--to", "2026-05-15"]


def test_the_example_ledger_prints_the_committed_output() -> None:
    out = io.StringIO()
    assert simulator.main(ARGS, out) == 0
    assert out.getvalue() == (EXAMPLES / "ledger.expected.txt").read_text()


def test_the_dunning_command_line_runs_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dunning_cli", "simulate", *ARGS, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["summary"]["handoffs"] == 4
    assert result["summary"]["fees"] == {"EUR": "102.50", "USD": "60.00"}
    assert result["summary"]["final_stages"] == {"collections": 4, "current": 2}


def test_csv_output_and_a_window() -> None:
    out = io.StringIO()
    assert (
        simulator.main(
            [*ARGS[:4], "--from", "2026-03-23", "--to", "2026-03-27", "--format", "csv"], out
        )
        == 0
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "date,time,account_id,stage,action,why"
    assert {line.split(",")[0] for line in lines[1:]} == {"2026-03-23", "2026-03-27"}
    assert any("thank_you" in line for line in lines)


def test_a_bad_ledger_names_the_line(tmp_path: Path, capsys) -> None:
    ledger = tmp_path / "bad.csv"
    ledger.write_text(
        "date,kind,account_id,invoice_id,amount,currency,due_date\n"
        "2026-03-01,invoice,A,INV-1,100.00,EUR,2026-03-10\n"
        "2026-03-02,refund,A,INV-1,100.00,EUR,\n"
    )
    assert simulator.main(["--policy", str(STANDARD), "--ledger", str(ledger)]) == 2
    assert "line 3: kind 'refund'" in capsys.readouterr().err
    ledger.write_text("date,kind,account_id\n03/01/2026,invoice,A\n")
    assert simulator.main(["--policy", str(STANDARD), "--ledger", str(ledger)]) == 2
    assert "line 2: date '03/01/2026'" in capsys.readouterr().err


def test_a_bad_policy_says_why(tmp_path: Path, capsys) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("segment: standard\nsteps: []\n")
    assert simulator.main(["--policy", str(policy), "--ledger", str(EXAMPLES / "ledger.csv")]) == 2
    assert "steps" in capsys.readouterr().err


def test_a_slower_policy_sends_fewer_notices() -> None:
    ledger = (EXAMPLES / "ledger.csv").read_text()
    _, standard = simulator.simulate(shipped_policy("standard"), ledger)
    _, strategic = simulator.simulate(shipped_policy("strategic"), ledger)
    assert sum(strategic["notices_by_stage"].values()) < sum(standard["notices_by_stage"].values())
