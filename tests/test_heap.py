"""heap.settle(): the start-up heap is frozen once per process, young objects collected
less often, and garbage made afterwards is still collected."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_settle_freezes_once_and_later_cycles_are_still_collected() -> None:
    # A fresh interpreter: in this one a started app may have settled the heap already.
    script = textwrap.dedent(
        """
        import gc, json, weakref
        from dunning_runtime import heap

        heap.settle()
        frozen = gc.get_freeze_count()
        threshold = gc.get_threshold()[0]
        heap.settle()  # a second app in the same process

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the collector can free it
        alive = weakref.ref(a)
        del a, b
        gc.collect()
        print(json.dumps({
            "frozen": frozen,
            "frozen_again": gc.get_freeze_count(),
            "threshold": threshold,
            "cycle_freed": alive() is None,
        }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(done.stdout)
    assert result["frozen"] > 1000  # the modules, classes and schemas loaded at start-up
    assert result["frozen_again"] == result["frozen"]
    assert result["threshold"] == 20_000
    assert result["cycle_freed"] is True
