"""What moves a suspended flow besides the user's answer, and what is kept for it meanwhile.

A turn brings the flow one arrival: an answer (any other value), a `Signal` (an outside event) or
a `Fired` timer. The wait the flow is suspended at takes it when it accepts it. Otherwise an
answer is kept in the session's mailbox for the flow's next wait for an answer (messages sent
during a sleep), and an event for its next wait for that event, for a while. Kept items are taken
in the order they came.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

from convoflow.clock import Clock
from convoflow.dialogs import Wait, Woke
from convoflow.frames import Waiting
from convoflow.types import JSON

log = logging.getLogger("convoflow.engine")

INBOX_LIMIT = 20
"""Answers kept while the flow waits for something else; past it, later ones are dropped (logged)."""
EVENTS_LIMIT = 50
"""Events kept that no wait has taken yet; past it, the oldest is dropped (logged)."""
KEEP_EVENTS_SECONDS = 86_400.0
"""How long an event no wait took is kept by default."""


@dataclass(frozen=True)
class Signal:
    """An outside event for one session: its name, its JSON data and its de-duplicating id."""

    name: str
    data: JSON
    id: str


@dataclass(frozen=True)
class Fired:
    """A timer firing for the due time `at` (Unix seconds): the turn runs as of at least then."""

    at: float


class Mailbox:
    """A session's kept answers (`{"value", "at"}`) and events (`{"name", "data", "id", "at",
    "until"}`), in the order they came; `keep_events` is how long an event waits to be taken."""

    def __init__(
        self, answers: Iterable[dict[str, Any]] = (), events: Iterable[dict[str, Any]] = (),
        keep_events: float = KEEP_EVENTS_SECONDS,
    ) -> None:
        self.answers = list(answers)
        self.events = list(events)
        self.keep_events = keep_events

    def keep_answer(self, value: JSON, now: float) -> bool:
        """Keep an answer for a later wait; False when the inbox is full and it was dropped."""
        if len(self.answers) >= INBOX_LIMIT:
            log.warning("inbox full (%d answers kept while the flow waits): dropping %r", INBOX_LIMIT, value)
            return False
        self.answers.append({"value": value, "at": now})
        return True

    def keep_event(self, signal: Signal, now: float) -> None:
        self.expire(now)
        if len(self.events) >= EVENTS_LIMIT:
            dropped = self.events.pop(0)
            log.warning("%d events kept: dropping the oldest, %r", EVENTS_LIMIT, dropped["name"])
        self.events.append({"name": signal.name, "data": signal.data, "id": signal.id, "at": now,
                            "until": now + self.keep_events})

    def take(self, answer: bool, names: tuple[str, ...], now: float) -> Woke | None:
        """The earliest kept item a wait accepting `answer` and events `names` takes, removed."""
        self.expire(now)
        event = next((item for item in self.events if item["name"] in names), None)
        kept = self.answers[0] if answer and self.answers else None
        if kept is not None and (event is None or kept["at"] <= event["at"]):
            self.answers.pop(0)
            return Woke("answer", kept["value"])
        if event is not None:
            self.events.remove(event)
            return Woke("event", event["data"], event["name"])
        return None

    def expire(self, now: float) -> None:
        self.events = [item for item in self.events if item["until"] > now]

    def clear_answers(self) -> None:
        self.answers = []


@dataclass(frozen=True)
class PendingWait:
    """The wait a flow is suspended at after a turn, as the engine schedules it."""

    due: float | None
    """When it next needs a turn of its own (its timeout or its next reminder); None: never."""
    deadline: float | None
    """When it times out; None: never."""
    answer: bool
    """The user's next message ends it."""
    events: tuple[str, ...]
    """These outside events end it."""
    began_now: bool
    """It began in this turn (it was not already waiting before)."""


_NOTHING: Any = object()


class Arrivals:
    """One turn's arrival together with the session's mailbox and the clock, as a flow's waits see
    them. A wait takes, in order: what the mailbox kept for it (it came earlier), its own timeout
    once due, then the turn's arrival; when none ends it, a reminder that is due goes out."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.mailbox = Mailbox()
        self._arrival: Any = _NOTHING
        self._fired_at: float | None = None
        self.taken = False
        """Whether a wait took this turn's arrival."""

    def begin(self, arrival: Any, mailbox: Mailbox | None, ignore_answer: bool) -> None:
        """A new turn brings `arrival` (an answer, a Signal or a Fired); with `ignore_answer` an
        answer goes nowhere (the message that starts a fresh dialog)."""
        if mailbox is not None:
            self.mailbox = mailbox
        self._fired_at = arrival.at if isinstance(arrival, Fired) else None
        self._arrival = _NOTHING if isinstance(arrival, Fired) else arrival
        self.taken = False
        if ignore_answer:
            self.drop_answer()

    def now(self) -> float:
        """The turn's time: the clock's, and no earlier than the timer it fires."""
        now = self.clock.now()
        return now if self._fired_at is None else max(now, self._fired_at)

    def wake(self, step: Wait[Any], waiting: Waiting, outbox: list[Any]) -> Woke | None:
        """What ends `step`'s wait now, if anything; a due reminder is added to `outbox`."""
        now = self.now()
        names = step.event_names()
        woke = self.mailbox.take(step.accepts_answer(), names, now)
        if woke is not None:
            return woke
        if waiting.due is not None and now >= waiting.due:
            return Woke("timeout")
        arrival = self._arrival
        if arrival is not _NOTHING:
            if isinstance(arrival, Signal):
                if arrival.name in names:
                    self._arrival, self.taken = _NOTHING, True
                    return Woke("event", arrival.data, arrival.name)
            elif step.accepts_answer():
                self._arrival, self.taken = _NOTHING, True
                return Woke("answer", arrival)
        reminder = self.next_reminder(step, waiting)
        if reminder is not None and reminder <= now:
            outbox.append(step.reminder_message())
            waiting.reminded = now
        return None

    def next_reminder(self, step: Wait[Any], waiting: Waiting) -> float | None:
        if waiting.began is None:
            return None
        return step.next_reminder(waiting.began, waiting.reminded or waiting.began, waiting.due)

    def drop_answer(self) -> None:
        if self._arrival is not _NOTHING and not isinstance(self._arrival, Signal):
            self._arrival = _NOTHING

    def settle(self, waiting: bool) -> None:
        """The turn is over: an arrival no wait took is kept (an answer only while the flow waits,
        for its next wait for an answer; an event in any case, for a while)."""
        arrival, self._arrival = self._arrival, _NOTHING
        if arrival is _NOTHING:
            return
        if isinstance(arrival, Signal):
            self.mailbox.keep_event(arrival, self.now())
        elif waiting:
            self.mailbox.keep_answer(arrival, self.now())
