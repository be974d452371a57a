"""Time and the outside world in a flow: durable sleeps, waits for outside events, the first of
several things, and the recorded current time and session key.

Every wait's record holds an absolute UTC due time computed from the engine's clock when the wait
began, so a restart or a deploy neither resets nor loses it; what ended the wait (an answer, an
event, the time) is recorded like an answer, so a replay takes the same path. The engine fires a
due wait as a turn of its own (convoflow.scheduler).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence, TypeVar

from convoflow.dialogs import BaseDialog, TimedOut, Wait, Woke
from convoflow.durations import seconds_of
from convoflow.fingerprints import digest
from convoflow.frames import DEFAULT_VERSION

__all__ = ["Reading", "TimedOut", "Woke", "now", "session_key", "sleep", "sleep_until", "wait_first", "wait_for_event"]

T = TypeVar("T")

SLEEP, EVENT, FIRST, NOW, KEY = "<sleep>", "<event>", "<first>", "<now>", "<key>"
"""Log names of the steps here (like `"<input>"`, they cannot clash with a dialog's name)."""


@dataclass(frozen=True)
class sleep(Wait[None]):  # noqa: N801 - reads as a statement in flows
    """Pause the conversation for `seconds` (a number or a timedelta). Nothing runs meanwhile and
    no process holds it; what the user sends during the pause is kept, in order, for the flow's
    next waits for an answer."""

    seconds: float | timedelta
    name: str = field(default=SLEEP, init=False, repr=False)
    version: str = field(default=DEFAULT_VERSION, init=False, repr=False)

    def __post_init__(self) -> None:
        seconds_of(self.seconds, "sleep()")

    def deadline(self, began: float) -> float | None:
        return began + seconds_of(self.seconds, "sleep()")

    def outcome(self, woke: Woke) -> None:
        return None


@dataclass(frozen=True)
class sleep_until(Wait[None]):  # noqa: N801
    """Pause the conversation until `when`, a timezone-aware datetime (at once if it has passed)."""

    when: datetime
    name: str = field(default=SLEEP, init=False, repr=False)  # a sleep, however its end was given
    version: str = field(default=DEFAULT_VERSION, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.when, datetime):
            raise TypeError(f"sleep_until() takes a datetime, not {type(self.when).__name__}")
        if self.when.utcoffset() is None:
            raise ValueError("sleep_until() needs a timezone-aware datetime (e.g. datetime.now(timezone.utc))")

    def deadline(self, began: float) -> float | None:
        return self.when.timestamp()

    def outcome(self, woke: Woke) -> None:
        return None


@dataclass(frozen=True)
class wait_for_event(Wait[Any]):  # noqa: N801
    """Wait for the outside event `event` (delivered by `Engine.signal`) and return its data.
    With `timeout`, TimedOut is raised when it does not come in time. An event that came before
    the flow waited for it is kept for a while (Engine `keep_events`) and taken at once."""

    event: str
    timeout: float | timedelta | None = None
    name: str = field(default=EVENT, init=False, repr=False)
    version: str = field(default=DEFAULT_VERSION, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_names((self.event,))
        if self.timeout is not None:
            seconds_of(self.timeout, "timeout")

    def event_names(self) -> tuple[str, ...]:
        return (self.event,)

    def deadline(self, began: float) -> float | None:
        return None if self.timeout is None else began + seconds_of(self.timeout, "timeout")

    def fingerprint(self) -> str | None:
        return digest(["event", self.event])

    def outcome(self, woke: Woke) -> Any:
        if woke.kind == "timeout":
            raise TimedOut(f"no {self.event!r} event within {seconds_of(self.timeout or 0, 'timeout'):g} s")
        return woke.value


@dataclass(frozen=True)
class wait_first(Wait[Woke]):  # noqa: N801
    """Wait for whichever comes first: the user's answer (with `answer=True`), one of the outside
    `events`, or the end of `timeout`; returns a `Woke` saying which, with its value. Nothing is
    raised: a timeout is `Woke("timeout")`.

        woke = yield wait_first(answer=True, events=("paid",), timeout=900)
        if woke.kind == "event": ...      # woke.event == "paid", woke.value is its data
    """

    answer: bool = False
    events: Sequence[str] = ()
    timeout: float | timedelta | None = None
    name: str = field(default=FIRST, init=False, repr=False)
    version: str = field(default=DEFAULT_VERSION, init=False, repr=False)

    def __post_init__(self) -> None:
        names = (self.events,) if isinstance(self.events, str) else tuple(self.events)
        _check_names(names)
        object.__setattr__(self, "events", names)
        if self.timeout is not None:
            seconds_of(self.timeout, "timeout")
        elif not self.answer and not names:
            raise ValueError("wait_first() needs answer=True, events or a timeout: nothing could end this wait")

    def accepts_answer(self) -> bool:
        return self.answer

    def event_names(self) -> tuple[str, ...]:
        return tuple(self.events)

    def deadline(self, began: float) -> float | None:
        return None if self.timeout is None else began + seconds_of(self.timeout, "timeout")

    def fingerprint(self) -> str | None:
        return digest(["first", self.answer, sorted(self.events)])

    def outcome(self, woke: Woke) -> Woke:
        return woke


class Reading(BaseDialog[T]):
    """A step that reads the turn's context (the clock, the session) once; the value is recorded,
    so a replay gets what the first run read."""

    def read(self, now: float, key: object) -> T:
        raise NotImplementedError


@dataclass(frozen=True)
class now(Reading[datetime]):  # noqa: N801
    """The current time, an aware UTC datetime from the engine's clock, recorded: deadlines a flow
    computes from it replay identically."""

    name: str = field(default=NOW, init=False, repr=False)
    version: str = field(default=DEFAULT_VERSION, init=False, repr=False)

    def read(self, now: float, key: object) -> datetime:
        return datetime.fromtimestamp(now, timezone.utc)


@dataclass(frozen=True)
class session_key(Reading[str]):  # noqa: N801
    """This conversation's key, "PARTITION/APP", recorded: what a flow hands to an outside system
    that will later send it an event (`Engine.signal`, `POST /events`)."""

    name: str = field(default=KEY, init=False, repr=False)
    version: str = field(default=DEFAULT_VERSION, init=False, repr=False)

    def read(self, now: float, key: object) -> str:
        if key is None:
            raise LookupError("session_key() needs a session: run the dialog with convoflow's Engine")
        return str(key)


def _check_names(names: tuple[str, ...]) -> None:
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"an event name must be a non-empty str, not {name!r}")
