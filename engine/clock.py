"""The engine's clock: every due time is computed from it, so a test can move time at will.

`now()` gives Unix seconds (UTC). The engine never reads the wall clock for timers itself: a
flow's waits, its `now()` steps, the idle timeout and the scheduler all ask the clock they were
given (`Engine(clock=...)`).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """The current time as Unix seconds (UTC)."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to: a test runs a day-long reminder in milliseconds.

    Pair it with `Scheduler.fire_due()`: move the clock, then fire what fell due.
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float | timedelta) -> float:
        """Move the clock forward by `seconds` (or a timedelta; a clock never goes back); returns
        the new time."""
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} seconds)")
        self._now += seconds
        return self._now

    def set(self, timestamp: float) -> None:
        """Jump to `timestamp` (Unix seconds), at or after the current time."""
        if timestamp < self._now:
            raise ValueError(f"a clock cannot go back (from {self._now} to {timestamp})")
        self._now = float(timestamp)
