"""A worker's lease on the replies it is delivering in one session.

Each outbox entry carries the worker that is to deliver it (`by`) and when it took it on (`at`);
another worker takes it over only once `at` is older than `handoff_seconds`. A worker whose
delivery takes long (a flood limit waited out) renews its lease, `at` set anew with one conditional
write, once half of `handoff_seconds` has passed: a quick delivery never renews, so it costs no round
trip. A renewal that finds an entry taken over (or delivered) by another worker loses the lease, and
the worker sends nothing more of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, TypeVar

from convoflow.plays import SuspendedPlays
from convoflow.messages import SessionKey
from convoflow.stores.base import Conflict, Session, Store, StoreError

log = logging.getLogger("convoflow.engine")

T = TypeVar("T")

MIN_PAUSE = 0.05
"""Seconds at least between attempts to renew a lease."""


class Lease:
    """This worker's hold on the replies `seqs` of `session`, as of the earliest of their `at`."""

    def __init__(self, store: Store, plays: SuspendedPlays[SessionKey], worker: str, handoff_seconds: float,
                 session: Session, seqs: set[int], through: Callable[[], int]) -> None:
        self.store, self.plays, self.worker, self.handoff_seconds = store, plays, worker, handoff_seconds
        self.session = session
        """The session as this worker last wrote or read it (its revision is the one to mark on)."""
        self.seqs = seqs
        """The replies still to send."""
        self.through = through
        """The highest seq this process has sent in the session."""
        self.since = min((item.get("at", 0.0) for item in session.outbox if item["seq"] in seqs), default=time.time())
        self.lost = False

    def due_in(self) -> float:
        """Seconds until the lease should be renewed (0: now)."""
        return max(0.0, self.since + self.handoff_seconds / 2 - time.time())

    def held(self) -> bool:
        """Whether no other worker may have taken these replies over yet."""
        return not self.lost and time.time() - self.since < self.handoff_seconds

    def sent(self, seq: int) -> None:
        self.seqs.discard(seq)

    async def keep(self) -> bool:
        """Renew the lease if it nears its end. Returns whether it is still held; a store that
        fails is logged, and the lease holds while its time is not up."""
        if self.lost or self.due_in() > 0 or not self.seqs:
            return not self.lost
        try:
            await self._renew()
        except StoreError as error:
            log.warning("could not renew the lease on the replies of %s: %s", self.session.key, error)
            return self.held()
        return not self.lost

    async def during(self, sending: Awaitable[T]) -> T:
        """Await `sending`, renewing the lease whenever it nears its end meanwhile (a timer: a
        quick send costs nothing)."""
        renewing: asyncio.Task[None] | None = None

        def start() -> None:
            nonlocal renewing
            renewing = asyncio.ensure_future(self._renewing())

        timer = asyncio.get_running_loop().call_later(self.due_in(), start)
        try:
            return await sending
        finally:
            timer.cancel()
            if renewing is not None:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)

    async def _renewing(self) -> None:
        while not self.lost:
            if not await self.keep() and self.lost:
                # too late to stop the send on its way; the worker that took them over sends it too
                log.warning("replies of %s were taken over while one was on its way", self.session.key)
                return
            await asyncio.sleep(max(self.due_in(), self.handoff_seconds / 20, MIN_PAUSE))

    async def _renew(self) -> None:
        session = self.session
        while True:
            now = time.time()
            outbox = tuple({**item, "by": self.worker, "at": now, "held": True} if item["seq"] in self.seqs else item
                           for item in session.outbox)
            renewed = session.advanced(outbox=outbox)
            try:
                await self.store.commit(renewed)
            except Conflict:
                reloaded = await self.store.load(session.key)
                if reloaded is None or not self._still_ours(reloaded):
                    self.lost = True
                    return
                session = reloaded
                continue
            self.plays.advance(session.key, session.revision, renewed.revision)
            self.session, self.since = renewed, now
            return

    def _still_ours(self, session: Session) -> bool:
        ours = {item["seq"] for item in session.outbox if item.get("by", self.worker) == self.worker}
        return all(seq in ours or seq <= self.through() for seq in self.seqs)

