"""One clock abstraction for every service (DESIGN.md principle 5: time is an input).

The system clock reads the wall clock; the manual clock only moves when told,
so tests and simulations can run 90 days in seconds.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

#: The range a manual clock may be set to (PUT /v1/admin/clock): wide enough for any
#: simulation, far enough from datetime's ends that dates derived from "now" (due dates,
#: grace days, retention windows, cursors) never overflow.
CLOCK_MIN = datetime(2000, 1, 1, tzinfo=UTC)
CLOCK_MAX = datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)


class ClockWentBackwards(ValueError):
    """Raised when a manual clock is asked to move back in time."""


class ClockOutOfRange(ValueError):
    """Raised when a manual clock is asked to leave ``CLOCK_MIN`` .. ``CLOCK_MAX``."""


class Clock(Protocol):
    """Where a service reads the time from."""

    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """The current UTC instant."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until ``set`` moves it forward.

    It starts at the wall-clock time, and its first ``set`` may go anywhere (a
    simulation can start in the past); from then on it only moves forward.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = datetime.now(UTC)
        self._was_set = False
        self._lock = asyncio.Lock()
        if start is not None:
            self.set(start)

    def now(self) -> datetime:
        """The instant the clock was last set to."""
        return self._now

    def set(self, instant: datetime) -> datetime:
        """Move the clock to ``instant``; moving it backwards raises ``ClockWentBackwards``,
        leaving ``CLOCK_MIN`` .. ``CLOCK_MAX`` raises ``ClockOutOfRange``."""
        if instant.tzinfo is None:
            raise ValueError("instants must carry a UTC offset")
        # Compare before converting: converting 0001-01-01T00:00+05:00 to UTC overflows.
        if not CLOCK_MIN <= instant <= CLOCK_MAX:
            raise ClockOutOfRange(
                f"the clock can be set from {CLOCK_MIN.isoformat()} to {CLOCK_MAX.isoformat()}; "
                f"{instant.isoformat()} is outside"
            )
        instant = instant.astimezone(UTC)
        if self._was_set and instant < self._now:
            raise ClockWentBackwards(
                f"the clock is at {self._now.isoformat()}; it cannot move back to "
                f"{instant.isoformat()}"
            )
        self._now = instant
        self._was_set = True
        return self._now

    @property
    def lock(self) -> asyncio.Lock:
        """Held while scheduled work runs, so a tick sees one consistent instant."""
        return self._lock
