"""The shared turn runner: how every channel takes its updates through the Engine.

Channels only translate (a platform payload into an `Incoming`, a `Reply` into platform calls);
the runner owns the rest, once for all of them:

- **acknowledgement**: a platform that waits for an answer (a webhook) is answered as soon as the
  update's turn has committed, never after its delivery (which goes on in the background, flood
  limit waits and all). An update whose attempt did not commit is never acknowledged: it gets a
  "deliver again" answer (503), and so does one whose commit has not landed within
  `ack_seconds` (the turn goes on; the platform's redelivery then finds it done). An update the
  bot leaves alone by design (nothing to commit) is acknowledged.
- **retries**: a turn that has committed but could not deliver yet, and an update the platform will
  not deliver again (already confirmed, as long polling does), are retried here after
  `retry_delays` (a committed turn only re-delivers its outbox: its incoming id makes that safe).
- **turns in flight**: tracked, and drained on shutdown (at most `drain_seconds`, then cancelled).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine

from convoflow.delivery import Deliver, DeliveryFailed
from convoflow.messages import Incoming
from convoflow.stores.base import StoreError
from convoflow.turns import Engine, TooManyConflicts

log = logging.getLogger("convoflow.runner")

ACK_SECONDS = 2.0
"""The longest an update waits for its turn's commit before it is answered 503, unless its channel
says otherwise (Slack counts an answer later than 3 seconds as a failure)."""
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Pauses before the attempts after the first (a store outage of some 15 seconds is waited out)."""
DRAIN_SECONDS = 20.0
"""How long shutdown waits for turns in flight (below the 25 s the server gives them)."""


@dataclass(frozen=True)
class Work:
    """One update's work, tried until it has gone through. `attempt(committed)` calls `committed()`
    once the update is durably processed; it raises StoreError or TooManyConflicts when nothing was
    committed, DeliveryFailed when it committed but its replies wait."""

    label: str
    attempt: Callable[[Callable[[], None]], Awaitable[Any]]


class TurnRunner:
    def __init__(
        self,
        engine: Engine,
        *,
        ack_seconds: float = ACK_SECONDS,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.engine = engine
        self.ack_seconds = ack_seconds
        self.retry_delays = retry_delays
        self.drain_seconds = drain_seconds
        self._tasks: set[asyncio.Task[Any]] = set()

    def turn(self, incoming: Incoming, deliver: Deliver, *, only_if_running: bool = False) -> Work:
        """The turn of `incoming`, its replies sent with `deliver`; see Engine.handle."""

        async def attempt(committed: Callable[[], None]) -> None:
            await self.engine.handle(incoming, deliver, committed, only_if_running=only_if_running)

        return Work(f"update {incoming.id} of {incoming.key}", attempt)

    async def answer(self, work: Work, within: float | None = None) -> bool:
        """Run the work of an update whose platform waits for an answer, and return once that
        answer is known: True to acknowledge it (committed, or nothing to commit), False to have it
        delivered again (an attempt that did not commit, or no commit within `within` seconds,
        `ack_seconds` by default). The work goes on meanwhile: its delivery, its retries once
        committed."""
        deadline = self.ack_seconds if within is None else within
        loop = asyncio.get_running_loop()
        # One future settled by whichever comes first (the commit, the first attempt's end, the
        # deadline) and no helper tasks: each hop through the event loop delays the answer by
        # every callback queued ahead of it, and a busy process has many.
        answered: asyncio.Future[bool | None] = loop.create_future()

        def settle(ok: bool | None) -> None:
            if not answered.done():
                answered.set_result(ok)

        committed = _Committed(lambda: settle(True))
        timer = loop.call_later(deadline, settle, None)
        task = self.spawn(self._attempts(work, committed, settle, redelivered=True))
        try:
            ok = await answered
        finally:
            timer.cancel()
        if ok is None:
            if not task.done():
                log.warning("%s not committed within %gs: asked for again, it goes on", work.label, deadline)
            return False
        return ok

    def take(self, work: Work) -> None:
        """Run the work of an update the platform will not deliver again, in the background,
        retrying it until it has gone through (or the retries run out)."""
        self.spawn(self._attempts(work, _Committed(), None, redelivered=False))

    async def complete(self, work: Work) -> bool:
        """Run the work to its end (delivery and retries included); True when it committed."""
        committed = _Committed()
        await self.spawn(self._attempts(work, committed, None, redelivered=False))
        return committed.done

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `work` as a task in flight: shutdown waits for it."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for the work in flight to finish (at most `drain_seconds`, then cancel the rest)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_seconds
        while self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                log.warning("cancelling %d turns still running at shutdown", len(self._tasks))
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                return
            await asyncio.wait(list(self._tasks), timeout=left)

    async def _attempts(
        self, work: Work, committed: _Committed, first: Callable[[bool], None] | None, redelivered: bool
    ) -> None:
        """Attempt `work` until it has gone through. With `redelivered` (the platform delivers an
        unacknowledged update again), an attempt that did not commit is left to that redelivery.
        `first` learns how the first attempt ended (once): True without error, False with one."""

        def settle(ok: bool) -> None:
            nonlocal first
            told, first = first, None
            if told is not None:
                told(ok)

        try:
            for delay in (*self.retry_delays, None):
                try:
                    await work.attempt(committed)
                    settle(True)
                    return
                except DeliveryFailed as failed:  # committed: its replies wait in the outbox
                    log.warning("%s", failed)
                except (StoreError, TooManyConflicts) as error:
                    if redelivered and not committed.done:
                        log.warning("%s not processed, the platform will deliver it again: %s", work.label, error)
                        return
                    log.warning("%s failed: %s", work.label, error)
                except Exception:
                    log.exception("%s failed", work.label)
                    return
                settle(False)
                if delay is None:
                    log.error("giving up on %s: the retries ran out", work.label)
                    return
                await asyncio.sleep(delay)
        finally:
            settle(False)


class _Committed:
    """The `committed` callback of a Work: remembers the commit, and tells `on_commit` at once."""

    __slots__ = ("done", "_on_commit")

    def __init__(self, on_commit: Callable[[], None] | None = None) -> None:
        self.done = False
        self._on_commit = on_commit

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            if self._on_commit is not None:
                self._on_commit()
