"""No contact data in logs or spans, at any level: the scenario (conftest.py) and every
probe of test_every_route ran with DEBUG JSON logs, uvicorn's access log and spans
exported to a real OTLP receiver; once the platform has stopped (flushing every span),
not one log line or span carries a contact's name, email or phone, nor an API key."""

from __future__ import annotations

import json

from tests.security.conftest import PERSONAL, WEBHOOK_SECRET, SecurityRun


def test_logs_and_spans_carry_no_contact_data_and_no_keys(security_run: SecurityRun) -> None:
    run = security_run
    run.platform.stop()  # SIGTERM: each process flushes its batched spans as it exits
    secrets = (*run.tenant_keys.values(), run.admin_key, WEBHOOK_SECRET)
    forbidden = (*PERSONAL, *secrets)

    lines = 0
    levels: set[str] = set()
    found: list[str] = []
    for log in sorted(run.platform.log_dir.glob("*.log")):
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            lines += 1
            if line.startswith("{"):
                levels.add(json.loads(line).get("level", ""))
            found += [
                f"{log.name}:{number}: {value!r} in {line[:300]}"
                for value in forbidden
                if value in line
            ]
    assert "DEBUG" in levels, f"no DEBUG line in {lines} lines: the scan would prove little"

    spans = list(run.receiver.spans)
    assert {span.service for span in spans} >= set(run.platform.services), "spans missing"
    for span in spans:
        for where, text in span.texts():
            found += [
                f"span {span.service} {span.name!r} {where}: {value!r} in {text[:300]!r}"
                for value in forbidden
                if value in text
            ]
    assert not found, f"{len(found)} leaks:\n" + "\n".join(found[:30])
    print(f"scanned {lines} log lines and {len(spans)} spans")
