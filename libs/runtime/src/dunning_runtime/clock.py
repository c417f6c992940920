"""One clock abstraction for every service (DESIGN.md principle 5: time is an input).

The system clock reads the wall clock; the manual clock only moves when told,
so tests and simulations can run 90 days in seconds.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol


class ClockWentBackwards(ValueError):
    """Raised when a manual clock is asked to move back in time."""


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
        self._now = _aware(start) if start else datetime.now(UTC)
        self._was_set = start is not None
        self._lock = asyncio.Lock()

    def now(self) -> datetime:
        """The instant the clock was last set to."""
        return self._now

    def set(self, instant: datetime) -> datetime:
        """Move the clock to ``instant``; moving it backwards raises ``ClockWentBackwards``."""
        instant = _aware(instant)
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


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("instants must carry a UTC offset")
    return instant.astimezone(UTC)
