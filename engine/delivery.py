"""Delivering committed replies: once, in order, even with many workers on one store.

A committed reply belongs to the worker that committed it (its outbox entry carries the worker's
mark and the time). Replies another worker committed moments ago are left to it, and ours that come
after them wait until they are gone: no reply goes out twice, and a session's replies keep their
order. The mark is a lease of `handoff_seconds`, renewed by a worker whose delivery takes long
(convoflow.leases); replies whose lease ran out are taken over (their worker died, or its delivery
failed), claimed first with a conditional write so that of several workers only one sends them.
Replies stored without a worker mark are anyone's. Sent replies whose mark the store refused stay
known to the lane, and the mark is retried until it lands: a worker never sends a reply twice.

Within this process each session has one delivery lane: deliveries of one session run one after
another, in the order their turns committed, and each skips what an earlier one has delivered.
Turns do not wait for it: the next update of a chat commits while the previous reply is still on
its way (waiting out a flood limit, say).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Awaitable, Callable

from convoflow.leases import Lease
from convoflow.messages import Reply, SessionKey, message_from_dict
from convoflow.plays import SuspendedPlays
from convoflow.stores.base import Conflict, Session, Store, StoreError
from convoflow.warm import WarmSessions

log = logging.getLogger("convoflow.engine")

MARK_PAUSES = (0.05, 2.0)
"""Seconds between attempts to mark sent replies delivered while the store refuses: the first
pause, doubled up to the last."""

Deliver = Callable[[Reply], Awaitable[None]]
"""A channel's way to send one reply to its platform."""
Route = Callable[[Reply], Deliver | None]
"""The delivery for a reply, chosen by its address (the channel it names), or None when no channel
here delivers it."""


class Undeliverable(Exception):
    """Raised by a channel when a reply can never be delivered (the user blocked the bot, the
    channel is gone): the reply is dropped and logged, and delivery goes on."""


class DeliveryFailed(Exception):
    """Delivery stopped on a transient error; the undelivered replies stay in the outbox and go out
    on the next attempt (a redelivered update, the session's next turn, or the sweep)."""

    def __init__(self, key: Any, error: BaseException, pending: int):
        self.key, self.error, self.pending = key, error, pending
        super().__init__(f"delivery to {key} failed, {pending} replies wait in the outbox: {error!r}")


@dataclass
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    through: int = 0
    """The highest seq this process has delivered (or dropped) in the session: a copy of the
    session loaded before that was recorded may still list it."""
    marks: dict[int, int] = field(default_factory=dict)
    """Revisions this process's marks moved the session on from, and the seq each marked through."""
    marking: asyncio.Future[None] | None = None
    """Done when the mark under way has landed (or failed)."""


def reply_of(key: SessionKey, item: dict[str, Any]) -> Reply:
    """An outbox entry as the Reply a channel sends."""
    return Reply(item["seq"], message_from_dict(item["message"]), item["to"], key)


class Delivery:
    """One worker's delivery of the replies its Engine commits. `plays` is the Engine's cache of
    suspended plays, told when a write changes a session without changing its state."""

    def __init__(self, store: Store, plays: SuspendedPlays[SessionKey], handoff_seconds: float) -> None:
        self.store = store
        self.plays = plays
        self.handoff_seconds = handoff_seconds
        self.worker = uuid.uuid4().hex[:12]
        """Marks the replies this worker commits or claims: they are its to deliver."""
        self.warm = WarmSessions(self.worker, plays.limit)
        """The records this worker wrote last, kept as its marks move them on."""
        self._lanes: dict[SessionKey, _Lane] = {}
        self.takeovers = 0
        """Replies this worker has taken over from another (whose lease had run out)."""

    def mine(self, item: dict[str, Any], now: float, held: bool = False) -> dict[str, Any]:
        """An outbox entry marked as this worker's to deliver, as of `now`; `held` when it is
        claiming it to deliver it at once (a takeover, a resume)."""
        return {**item, "by": self.worker, "at": now, "held": True} if held else {**item, "by": self.worker, "at": now}

    @asynccontextmanager
    async def in_use(self, key: SessionKey) -> AsyncIterator[_Lane]:
        """Keep what this process knows of the session's delivery while a turn of it loads,
        commits and delivers."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.users += 1
        try:
            yield lane
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[key]

    @asynccontextmanager
    async def lane(self, key: SessionKey) -> AsyncIterator[_Lane]:
        """The session's delivery lane, held."""
        async with self.in_use(key) as lane, lane.lock:
            yield lane

    async def caught_up(self, session: Session) -> Session:
        """`session` as this worker's own marks have moved it on since it was loaded (replies
        marked delivered, the revision one up each time; a mark under way is waited for), so that a
        turn committing on it does not conflict with its own earlier delivery."""
        lane = self._lanes.get(session.key)
        if lane is not None and lane.marking is not None:
            await asyncio.shield(lane.marking)
        while lane is not None and session.revision in lane.marks:
            session = replace(_after(session, lane.marks[session.revision]), revision=session.revision + 1)
        return session

    async def deliver(self, session: Session, deliver: Deliver | None, everything: bool = False) -> list[Reply]:
        """Deliver, in order, the replies of the session's outbox that are this worker's, or with
        `everything` see every reply now in the outbox out (a redelivered update: its first
        worker may have died before delivering). Returns the replies delivered (with no `deliver`,
        the caller sends them itself)."""
        async with self.lane(session.key) as lane:
            return await self._deliver(lane, session, deliver, everything)

    async def resume(self, key: SessionKey, deliver: Deliver | None, *, expired: bool = False) -> list[Reply]:
        """Take over and deliver whatever a session still has in its outbox (with `expired`, only
        once no other worker's lease on its replies holds). The replies are first claimed for this
        worker with one conditional write, so of several workers resuming one session only one
        delivers; a session that moved meanwhile, or whose replies another worker has claimed and
        holds the lease on, is left to that worker."""
        async with self.lane(key) as lane:
            session = await self.store.load(key)
            if session is None:
                return []
            session = _after(session, lane.through)
            if not session.outbox:
                return []
            now = time.time()
            if any(not self._free(item, now) and (expired or item.get("held", False)) for item in session.outbox):
                return []  # its worker is alive and delivering
            claimed = await self._committed_claim(session, tuple(self.mine(item, now, held=True) for item in session.outbox))
            if claimed is None:
                return []
            self.takeovers += sum(1 for item in session.outbox if item.get("by", self.worker) != self.worker)
            return await self._deliver(lane, claimed, deliver)

    async def sweep(self, app: str, route: Route, within: float) -> int:
        """Resume the sessions of `app` whose replies have waited undelivered longer than
        `handoff_seconds` (and less than `within` seconds), each reply through the channel its
        address names. Returns how many replies went out."""
        now = time.time()
        sent = 0
        for session in await self.store.undelivered(app, now - within, now - self.handoff_seconds):
            if not session.outbox or route(reply_of(session.key, session.outbox[0])) is None:
                continue  # no channel here for it: another process delivers it
            try:
                replies = await self.resume(session.key, _routed(route), expired=True)
            except DeliveryFailed as failed:
                log.warning("%s", failed)
                continue
            if replies:
                log.info("re-delivered %d waiting replies of session %s", len(replies), session.key)
            sent += len(replies)
        return sent

    # --- the lane's work -----------------------------------------------------------------------

    async def _deliver(self, lane: _Lane, session: Session, deliver: Deliver | None, everything: bool = False) -> list[Reply]:
        delivered: list[Reply] = []
        session = _after(session, lane.through)
        owed = {item["seq"] for item in session.outbox if everything or item.get("by", self.worker) == self.worker}
        pause = 0.01
        while session.outbox:
            claimed = await self._claim(session)
            if claimed is not None:
                session, ready = claimed
                if ready:
                    delivered += await self._send(lane, session, ready, deliver)
                if not any(item["seq"] in owed for item in session.outbox[ready:]):
                    return delivered
                # what we owe waits behind another worker's replies: give it time to deliver them
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.25)
            reloaded = await self.store.load(session.key)
            if reloaded is None:
                break
            session = _after(reloaded, lane.through)
        return delivered

    async def _claim(self, session: Session) -> tuple[Session, int] | None:
        """The session and how many replies at the head of its outbox this worker may deliver now;
        None when claiming replies taken over from another worker lost a race (reload and retry)."""
        now = time.time()
        ready, taken_over = 0, 0
        for item in session.outbox:
            if not self._free(item, now):
                break
            taken_over += item.get("by", self.worker) != self.worker
            ready += 1
        if not taken_over:
            return session, ready
        outbox = tuple(self.mine(item, now, held=True) if n < ready else item for n, item in enumerate(session.outbox))
        claimed = await self._committed_claim(session, outbox)
        if claimed is None:
            return None
        self.takeovers += taken_over
        return claimed, ready

    def _free(self, item: dict[str, Any], now: float) -> bool:
        """Whether this worker may deliver the entry: its own, or one whose lease has run out."""
        return item.get("by", self.worker) == self.worker or now - item.get("at", 0.0) >= self.handoff_seconds

    async def _committed_claim(self, session: Session, outbox: tuple[dict[str, Any], ...]) -> Session | None:
        """`session` with its outbox re-marked, committed; None when another worker moved it first."""
        claimed = session.advanced(outbox=outbox)
        try:
            await self.store.commit(claimed)
        except Conflict:
            return None
        self.plays.advance(session.key, session.revision, claimed.revision)
        self.warm.wrote(claimed)
        return claimed

    async def _send(self, lane: _Lane, session: Session, count: int, deliver: Deliver | None) -> list[Reply]:
        """Deliver the first `count` replies of the outbox, then mark them delivered. Each is sent
        only while this worker's lease on them holds (renewed as it nears its end); what it has
        sent, it remembers in the lane, so it never sends it again, whatever the store does."""
        delivered: list[Reply] = []
        through = 0
        failure: BaseException | None = None
        heads = session.outbox[:count]
        lease = Lease(self.store, self.plays, self.worker, self.handoff_seconds, session,
                      {item["seq"] for item in heads}, lambda: lane.through)
        for item in heads:
            reply = reply_of(session.key, item)
            if deliver is not None:
                if not await lease.keep():
                    if not lease.lost:  # the store is out of reach, and the lease ran out meanwhile
                        failure = StoreError(f"lease on the replies of {session.key} ran out")
                    break  # lost: another worker took the rest over
                try:
                    await lease.during(deliver(reply))
                except Undeliverable as error:
                    log.warning("dropping reply %s to %s: %s", reply.seq, session.key, error)
                    through = lane.through = reply.seq
                    lease.sent(reply.seq)
                    continue
                except Exception as error:  # transient: the rest waits in the outbox
                    failure = error
                    break
            delivered.append(reply)
            through = lane.through = reply.seq
            lease.sent(reply.seq)
        if through:
            await self._mark(lane, lease.session, through)
        if failure is not None:
            pending = sum(1 for item in session.outbox if item["seq"] > through)
            raise DeliveryFailed(session.key, failure, pending) from failure
        return delivered

    async def _mark(self, lane: _Lane, session: Session, through: int) -> None:
        """Mark the replies up to `through` delivered, retrying until the store takes it (they
        are sent: sending them again is what must not happen)."""
        lane.marking = marking = asyncio.get_running_loop().create_future()
        pause = MARK_PAUSES[0]
        try:
            while True:
                try:
                    marked = await self.store.mark_delivered(session.key, session.revision, through)
                    break
                except StoreError as error:
                    log.warning("replies of %s through %d are sent; marking them delivered failed, "
                                "retried in %gs: %s", session.key, through, pause, error)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, MARK_PAUSES[1])
            self.warm.marked(session, through, marked)
            if marked:
                self.plays.advance(session.key, session.revision, session.revision + 1)
                lane.marks[session.revision] = through
        finally:
            lane.marking = None
            marking.set_result(None)


def _after(session: Session, through: int) -> Session:
    """The session without the replies up to `through`, which this process has delivered."""
    if not through or not session.outbox or session.outbox[0]["seq"] > through:
        return session
    return replace(session, outbox=tuple(item for item in session.outbox if item["seq"] > through))


def _routed(route: Route) -> Deliver:
    async def deliver(reply: Reply) -> None:
        found = route(reply)
        if found is None:  # transient for us: the reply waits for a process that has its channel
            raise LookupError(f"no channel {reply.channel!r} here for reply {reply.seq}")
        await found(reply)

    return deliver
