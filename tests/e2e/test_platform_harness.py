"""The platform harness's failure path: a service that cannot start is named, with why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.platform import Platform, PlatformError


def test_a_service_that_exits_at_start_is_named_with_its_log(tmp_path: Path) -> None:
    broken = Platform(tmp_path, env={"DUNNING_BUS_PARTITIONS": "0"})
    with pytest.raises(PlatformError, match="invoice-svc exited with") as failure:
        broken.start()
    # The log tail says which setting was wrong; nothing is left running.
    assert "DUNNING_BUS_PARTITIONS" in str(failure.value)
    assert broken.procs == {}
