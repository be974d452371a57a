"""Durations as flows write them (seconds or a timedelta), and the times of a wait's reminders."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, Sequence

ReminderRule = float | tuple[float, ...]
"""Every that many seconds, or at these offsets (seconds from the start of the wait)."""


def seconds_of(value: Any, what: str) -> float:
    """`value` (a number of seconds or a timedelta) as seconds; a clear error for anything else."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{what} must be a number of seconds or a timedelta, not {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be finite and at least 0 seconds, not {value!r}")
    return seconds


def reminder_offsets(value: Any) -> ReminderRule:
    """`remind_after` as a rule: one interval, or the offsets of each reminder in order."""
    if isinstance(value, (int, float, timedelta)) and not isinstance(value, bool):
        every = seconds_of(value, "remind_after")
        if every <= 0:
            raise ValueError("remind_after must be more than 0 seconds")
        return every
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"remind_after must be seconds, a timedelta or a sequence of them, not {type(value).__name__}")
    offsets = tuple(sorted(seconds_of(item, "each remind_after offset") for item in value))
    if not offsets or offsets[0] <= 0:
        raise ValueError("remind_after needs at least one offset, each more than 0 seconds")
    return offsets


def next_reminder(rule: ReminderRule, began: float, after: float, deadline: float | None) -> float | None:
    """The first reminder time strictly after `after` (and before `deadline`) for a wait that
    began at `began`. An interval repeats until the deadline; without a deadline it fires once."""
    if isinstance(rule, tuple):
        for offset in rule:
            at = began + offset
            if at > after and (deadline is None or at < deadline):
                return at
        return None
    if deadline is None:
        at = began + rule
        return at if at > after else None
    at = began + (math.floor((after - began) / rule) + 1) * rule
    if at <= after:  # rounding put it on the slot just passed
        at += rule
    return at if at < deadline else None
