"""Fires due timers as turns: every serving process runs one Scheduler per bot.

A firing is a turn of its own kind (`Incoming` "timer") whose id is derived from the session's due
time, so the conditional commit and the seen ids make a timer fire exactly once among any number
of processes, and a firing cut short by a crash is fired again (the session is still due). The
scheduler sleeps until the next due time it knows (from the index, and from the turns of its own
engine as they commit), and looks at the index at least every `poll_seconds` for timers other
processes set. A timer costs nothing until it is due: the index holds it, no task waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Awaitable, Callable, Protocol

from convoflow.clock import Clock
from convoflow.messages import Reply, SessionKey
from convoflow.stores.base import Session, Store, StoreError

log = logging.getLogger("convoflow.scheduler")

BATCH = 500
"""Due sessions read from the index at a time (in random order: processes firing the same due
timers then mostly pick different sessions first, instead of racing for the same ones)."""
CONCURRENCY = 32
"""Timer turns one scheduler runs at once."""
MAX_LOOK_PAST = 100_000
"""Due sessions a scheduler reads at most in one look, past those it does not fire itself."""


class TimerEngine(Protocol):
    """What the scheduler needs of an Engine."""

    app: str
    store: Store
    clock: Clock

    async def fire(self, key: SessionKey, due: float, deliver: Callable[[Reply], Awaitable[None]] | None,
                   session: Session | None = None) -> bool:
        """Fire the timer of `key` due at `due` (`session`: as just read); True when this call
        played and committed it."""
        ...

    def watch_due(self, listener: Callable[[float], None]) -> None:
        """Have `listener(due)` called whenever a turn commits a session with a due time."""
        ...


class Scheduler:
    """Fires the due timers of `engine`'s bot; `send` delivers the replies of those turns (the host
    routes each reply by its address to its channel). With `wanted`, only the sessions it accepts
    are fired (those of the channels this process serves: the others are left to the processes
    that serve theirs)."""

    def __init__(
        self, engine: TimerEngine, send: Callable[[Reply], Awaitable[None]], *, poll_seconds: float = 1.0,
        batch: int = BATCH, concurrency: int = CONCURRENCY, wanted: Callable[[SessionKey], bool] | None = None,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError("poll_seconds must be more than 0")
        self.engine = engine
        self.send = send
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.concurrency = concurrency
        self.wanted = wanted
        self._soonest: float | None = None
        self._woken = asyncio.Event()
        engine.watch_due(self._heard)

    async def run(self) -> None:
        """Fire due timers until cancelled. A store outage is logged and waited out: the timers
        that fell due meanwhile fire once it answers again."""
        while True:
            try:
                await self.fire_due()
            except StoreError as error:
                log.warning("could not look for due timers: %s", error)
            except Exception:  # noqa: BLE001 - the scheduler must outlive any one failure
                log.exception("firing due timers failed")
            await self._sleep()

    async def fire_due(self) -> int:
        """Fire every timer due now, once; returns how many this scheduler fired (not those another
        process fired first, nor those no longer due when their turn came)."""
        fired = 0
        tried: set[tuple[SessionKey, float]] = set()
        slots = asyncio.Semaphore(self.concurrency)

        async def fire(session: Session) -> bool:
            key, due = session.key, session.due
            assert due is not None
            async with slots:
                try:
                    return await self.engine.fire(key, due, self.send, session)
                except StoreError as error:
                    log.warning("timer of session %s not fired yet: %s", key, error)
                except Exception:  # noqa: BLE001 - one session's failure must not stop the others
                    log.exception("firing the timer of session %s failed", key)
                return False

        limit = self.batch
        while True:
            # One look at the index serves both: what is due now, and the soonest due next.
            now = self.engine.clock.now()
            looked = await self.engine.store.due(self.engine.app, now + self.poll_seconds, limit=limit)
            found = [session for session in looked
                     if session.due is not None and (self.wanted is None or self.wanted(session.key))]
            later = [session.due for session in found if session.due is not None and session.due > now]
            self._soonest = later[0] if later else None
            todo = [session for session in found
                    if session.due is not None and session.due <= now and (session.key, session.due) not in tried]
            if not todo:
                if later or len(looked) < limit or limit >= MAX_LOOK_PAST:
                    break
                limit *= 2  # the soonest are others' to fire (or failed to): look past them
                continue
            random.shuffle(todo)
            tried.update((session.key, session.due) for session in todo if session.due is not None)
            fired += sum(await asyncio.gather(*(fire(session) for session in todo)))
        return fired

    def _heard(self, due: float) -> None:
        """A turn of this engine committed a timer: wake up earlier if it is the soonest known."""
        if self._soonest is None or due < self._soonest:
            self._soonest = due
            self._woken.set()

    async def _sleep(self) -> None:
        pause = self.poll_seconds
        if self._soonest is not None:
            pause = min(pause, max(0.0, self._soonest - self.engine.clock.now()))
        self._woken.clear()
        try:
            await asyncio.wait_for(self._woken.wait(), pause)
        except asyncio.TimeoutError:
            pass
