"""Supervision of a service's long-running tasks: relay, consumers, scheduled-job loops.

A task that dies is logged with its cause and restarted after an exponential
backoff with jitter; while it waits to restart it counts as down, and
``/readyz`` names it. A task that ran for a while before dying starts its
backoff afresh, so one failure a day does not wait like the tenth in a row.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: What a supervised task runs: a coroutine that runs until cancelled or raises.
TaskFn = Callable[[], Awaitable[object]]


class TaskReturned(RuntimeError):
    """A supervised task returned although it should run until cancelled."""


@dataclass(frozen=True)
class Backoff:
    """Delays between restarts: ``initial_s * 2**n`` capped at ``max_s``, plus jitter.

    The jitter (up to ``jitter`` of the delay, added) keeps the tasks of many
    replicas from restarting against a recovering broker in lockstep.
    """

    initial_s: float = 0.2
    max_s: float = 30.0
    jitter: float = 0.5
    #: A task that ran this long before dying restarts with the initial delay.
    healthy_after_s: float = 60.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before restart number ``failures`` (1 = first) of a streak."""
        base = min(self.max_s, self.initial_s * 2.0 ** max(0, failures - 1))
        return float(base * (1 + random.uniform(0, self.jitter)))


class Supervisor:
    """Runs named tasks, restarting each one that dies, and knows which are down."""

    def __init__(self, service: str, backoff: Backoff | None = None) -> None:
        self.service = service
        self.backoff = backoff or Backoff()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._down: dict[str, str] = {}
        self._restarts: dict[str, int] = {}

    def start(self, name: str, run: TaskFn) -> asyncio.Task[None]:
        """Run ``run()`` as task ``name`` under supervision; names are unique per supervisor."""
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        task = asyncio.create_task(self._supervise(name, run), name=name)
        self._tasks[name] = task
        self._restarts[name] = 0
        return task

    @property
    def names(self) -> list[str]:
        """Every supervised task's name, in start order."""
        return list(self._tasks)

    def down(self) -> dict[str, str]:
        """Tasks that are not running now, each with why (``"down: <cause>"``)."""
        return dict(self._down)

    def restarts(self, name: str) -> int:
        """How often task ``name`` has been restarted."""
        return self._restarts[name]

    async def stop(self, timeout_s: float = 2.0) -> list[str]:
        """Cancel every task and wait up to ``timeout_s``; returns the names still running.

        A task that ignores cancellation is left behind (and logged) rather than
        holding up the shutdown: the process is about to exit anyway.
        """
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if not tasks:
            return []
        _, stuck = await asyncio.wait(tasks, timeout=timeout_s)
        names = sorted(task.get_name() for task in stuck)
        for name in names:
            log.error("%s: task %s did not stop within %.1f s", self.service, name, timeout_s)
        self._tasks.clear()
        return names

    async def _supervise(self, name: str, run: TaskFn) -> None:
        failures = 0
        while True:
            self._down.pop(name, None)
            started = time.monotonic()
            try:
                await run()
                raise TaskReturned(f"{name} returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - started >= self.backoff.healthy_after_s:
                    failures = 0
                failures += 1
                delay = self.backoff.delay(failures)
                cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self._down[name] = f"down: {cause}"
                # The traceback once per streak: a task failing on a dead broker
                # every 30 s should not bury the log in identical stacks.
                log.error(
                    "%s: task %s died (%s); restarting in %.1f s",
                    self.service,
                    name,
                    cause,
                    delay,
                    exc_info=exc if failures == 1 else None,
                )
            await asyncio.sleep(delay)
            self._restarts[name] += 1
            log.info("%s: restarting task %s (restart %d)", self.service, name, failures)
