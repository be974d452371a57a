"""The Engine: one transactional turn per incoming update.

1. load the session (serialised per session key within this process);
2. an incoming id seen before only re-delivers what is still in the outbox;
3. play the dialog against its state plus the new input;
4. commit state, replies (appended to the outbox) and the incoming id in one conditional write;
   a conflict means another worker moved the session: reload and redo;
5. deliver the outbox in order, then mark it delivered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, Mapping

from datetime import timedelta

from convoflow import wakeups
from convoflow.buttons import ButtonRef
from convoflow.clock import Clock, SystemClock
from convoflow.durations import seconds_of
from convoflow.mailbox import KEEP_EVENTS_SECONDS
from convoflow.messages import Incoming, Reply, SessionKey, Text, message_from_dict, message_to_dict
from convoflow.player import Play
from convoflow.replay import DialogState, state_from_dict
from convoflow.dialogs import BaseDialog
from convoflow.stores.base import SEEN_LIMIT, Conflict, Session, SessionTooLarge, Store
from convoflow.timed_turns import Played, TimedTurns, running
from convoflow.wakeups import Outcome

log = logging.getLogger("convoflow.engine")

Command = Literal["restart", "cancel"]
Deliver = Callable[[Reply], Awaitable[None]]
"""A channel's way to send one reply to its platform."""

DEFAULT_COMMANDS: Mapping[str, Command] = {"/start": "restart", "/cancel": "cancel"}
CONFLICT_PAUSE = 0.005
"""Seconds; after the n-th conflict a turn waits a random time up to CONFLICT_PAUSE * 2**n (n <= 6)."""


class Undeliverable(Exception):
    """Raised by a channel when a reply can never be delivered (the user blocked the bot, the
    channel is gone): the reply is dropped and logged, and delivery goes on."""


class DeliveryFailed(Exception):
    """Delivery stopped on a transient error; the undelivered replies stay in the outbox and go out
    on the next attempt (a redelivered update, or the session's next turn)."""

    turn: Outcome = "ok"
    """The outcome of the turn that committed them."""

    def __init__(self, key: Any, error: BaseException, pending: int):
        self.key, self.error, self.pending = key, error, pending
        super().__init__(f"delivery to {key} failed, {pending} replies wait in the outbox: {error!r}")


class TooManyConflicts(Exception):
    def __init__(self, key: Any, attempts: int):
        self.key, self.attempts = key, attempts
        super().__init__(f"session {key}: gave up after {attempts} conflicting commits")


@dataclass(frozen=True)
class TurnOutcome:
    """What one `handle` call did, for logs and metrics."""

    key: SessionKey
    outcome: Outcome
    replies: int
    conflicts: int
    seconds: float
    pending: int = 0
    """Replies of this session still waiting in the outbox after the turn."""

    @property
    def channel(self) -> str:
        return self.key.partition.partition(":")[0]


@dataclass
class _Live:
    revision: int
    play: Play


class Engine(TimedTurns):
    """Runs one conversation (`dialog_factory()` gives its top dialog) for every session.

    `fallback` runs before a session restarts because the code changed under it. `commands` map
    command texts to "restart" or "cancel". `max_live` bounds how many suspended dialogs are kept
    in memory to skip replays (0 disables it). `handoff_seconds` is how long replies another worker
    committed stay that worker's to deliver before this one takes them over (the other is taken to
    have died between commit and delivery).

    Time and the outside world: `clock` gives every due time; a conversation waiting `idle_timeout`
    for the user (or an event) ends, after `on_idle` runs; an event no wait took is kept
    `keep_events` seconds; event and start ids are remembered `remember_ids` seconds.
    """

    def __init__(
        self,
        dialog_factory: Callable[[], BaseDialog[Any]],
        store: Store,
        fallback: Callable[[], BaseDialog[Any]] | None = None,
        commands: Mapping[str, Command] = DEFAULT_COMMANDS,
        *,
        app: str | None = None,
        apology: str = "Sorry, something went wrong on our side. Please try again.",
        cancel_reply: str = "Okay, stopped. Send /start to begin again.",
        expired_button_reply: str = "That button is no longer active. Please answer the latest message.",
        max_live: int = 10_000,
        max_conflicts: int = 20,
        handoff_seconds: float = 15.0,
        on_turn: Callable[[TurnOutcome], None] | None = None,
        clock: Clock = SystemClock(),
        idle_timeout: float | timedelta | None = None,
        on_idle: Callable[[], BaseDialog[Any]] | None = None,
        keep_events: float = KEEP_EVENTS_SECONDS,
        remember_ids: float = wakeups.REMEMBER_IDS_SECONDS,
    ) -> None:
        self.dialog_factory = dialog_factory
        self.store = store
        self.fallback = fallback
        self.commands = dict(commands)
        self.app = app or dialog_factory().name
        self.apology = apology
        self.cancel_reply = cancel_reply
        self.expired_button_reply = expired_button_reply
        self.max_live = max_live
        self.max_conflicts = max_conflicts
        self.handoff_seconds = handoff_seconds
        self.on_turn = on_turn
        self.worker = uuid.uuid4().hex[:12]
        """Marks the replies this Engine commits or claims: they are its to deliver (see `_deliver`)."""
        self._live: OrderedDict[Any, _Live] = OrderedDict()
        self._locks: dict[Any, tuple[asyncio.Lock, int]] = {}
        self.clock = clock
        self.idle_timeout = None if idle_timeout is None else seconds_of(idle_timeout, "idle_timeout") or None
        self.on_idle = on_idle
        self.keep_events = keep_events
        self.remember_ids = max(remember_ids, wakeups.REMEMBER_IDS_SECONDS)
        self._due_listeners: list[Callable[[float], None]] = []

    async def handle(
        self, incoming: Incoming, deliver: Deliver | None = None, on_committed: Callable[[], None] | None = None
    ) -> list[Reply]:
        return (await self._handle(incoming, deliver, on_committed))[0]

    async def _handle(
        self, incoming: Incoming, deliver: Deliver | None = None, on_committed: Callable[[], None] | None = None
    ) -> tuple[list[Reply], Outcome]:
        """Process one update. Returns the replies delivered (all of them when `deliver` is None:
        the caller then sends them itself). `on_committed` is called once the update is durably
        processed (committed, or recognised as a duplicate), before delivery: the moment a channel
        may acknowledge it to the platform.

        Raises StoreError when the store fails (nothing was committed: ask for a redelivery),
        DeliveryFailed when the turn committed but a reply could not be sent yet. A turn whose
        session would outgrow the store's size limit is dropped: the user gets the apology.
        """
        started = time.perf_counter()
        key = incoming.key
        outcome: Outcome = "store_error"
        conflicts = 0
        replies: list[Reply] = []
        pending = 0
        try:
            if on_committed is not None and key in self._locks:
                # A redelivery of an update this process is still busy with (its delivery may wait
                # on another worker): it is processed already, so say so now, not after that wait.
                early = await self.store.load(key)
                if early is not None and incoming.id in early.seen:
                    on_committed()
                    on_committed = None
            async with self._serialised(key):
                while True:
                    stored = await self.store.load(key)
                    session = stored or Session(key)
                    if incoming.id in session.seen or wakeups.is_remembered(session, incoming.id, self.clock.now()):
                        outcome, committed = "duplicate", session
                        break
                    played, outcome, play = await self._turn(session, incoming, stored is not None)
                    if played is None:  # nothing to commit (a stale timer, a skipped start)
                        return [], outcome
                    committed = played
                    try:
                        try:
                            await self.store.commit(committed)
                        except SessionTooLarge as error:
                            # The flow grew its session past the store's limit: drop this turn
                            # and tell the user, rather than have the platform redeliver forever.
                            log.error("turn dropped in session %s: %s", key, error)
                            if play is not None:
                                play.close()
                            committed = self._commit_of(session, incoming, session.state, [Text(self.apology)],
                                                        **({"due": None} if incoming.kind == "timer" else {}))
                            outcome, play = "failed", None
                            await self.store.commit(committed)
                    except Conflict:
                        if play is not None:
                            play.close()  # advanced past a state that lost the race
                        conflicts += 1
                        if conflicts >= self.max_conflicts:
                            outcome = "conflicted"
                            raise TooManyConflicts(key, conflicts) from None
                        # A random pause spreads out workers racing on one session, so the one
                        # that must replay is not beaten every time by the one that need not.
                        await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE * 2 ** min(conflicts, 6)))
                        continue
                    if play is not None:
                        self._keep(key, committed.revision, play)
                    if committed.due is not None:
                        for listener in self._due_listeners:
                            listener(committed.due)
                    break
                if on_committed is not None:
                    on_committed()
                try:
                    replies = await self._deliver(committed, deliver, everything=outcome == "duplicate")
                except DeliveryFailed as failed:
                    failed.turn = outcome
                    outcome, pending = "undelivered", failed.pending
                    raise
        finally:
            self._report(TurnOutcome(key, outcome, len(replies), conflicts, time.perf_counter() - started, pending))
        return replies, outcome

    async def _handle_delivered(self, incoming: Incoming, deliver: Deliver | None) -> tuple[list[Reply], Outcome]:
        """`_handle`, with a delivery that failed after the commit logged, not raised (the replies
        wait in the outbox for the next attempt)."""
        try:
            return await self._handle(incoming, deliver)
        except DeliveryFailed as failed:
            log.warning("%s", failed)
            return [], failed.turn

    async def resume(self, key: SessionKey, deliver: Deliver | None = None) -> list[Reply]:
        """Take over and deliver whatever a session still has in its outbox (after a crash or a
        restart). The replies are first claimed for this worker with one conditional write, so of
        several workers resuming one session only one delivers; a session that moved meanwhile is
        left to the worker that moved it."""
        async with self._serialised(key):
            session = await self.store.load(key)
            if session is None or not session.outbox:
                return []
            now = time.time()
            claimed = await self._committed_claim(session, tuple(self._mine(item, now) for item in session.outbox))
            return [] if claimed is None else await self._deliver(claimed, deliver)

    async def redeliver_waiting(self, deliver_for: Callable[[SessionKey], Deliver | None], within: float = 86_400) -> int:
        """Resume this bot's sessions whose replies have waited undelivered longer than
        `handoff_seconds` (and less than `within` seconds): their worker died or their delivery
        failed. `deliver_for(key)` gives the channel's delivery for a session, or None to skip it.
        Returns how many replies went out."""
        now = time.time()
        sent = 0
        for session in await self.store.undelivered(self.app, now - within, now - self.handoff_seconds):
            deliver = deliver_for(session.key)
            if deliver is None:
                continue
            try:
                replies = await self.resume(session.key, deliver)
            except DeliveryFailed as failed:
                log.warning("%s", failed)
                continue
            if replies:
                log.info("re-delivered %d waiting replies of session %s", len(replies), session.key)
            sent += len(replies)
        return sent

    async def move(self, old: SessionKey, new: SessionKey, address: dict[str, Any]) -> bool:
        """Continue the session `old` under the key `new` (a chat that changed its id): `new`
        starts as a copy (state, seen ids, outbox readdressed to `address`) and `old` ends.
        Returns False when `old` has no conversation in progress or `new` already exists."""
        first, second = sorted((old, new))  # one lock order, so two moves never deadlock
        async with self._serialised(first), self._serialised(second):
            session = await self.store.load(old)
            if session is None or session.state is None or await self.store.load(new) is not None:
                return False
            outbox = tuple({**item, "to": address} for item in session.outbox)
            await self.store.commit(replace(session, key=new, revision=0, outbox=outbox, address=address).advanced())
            await self.store.commit(session.advanced(state=None, outbox=(), due=None, idle_at=None))
            self._forget(old)
            log.info("session %s moved to %s", old, new)
            return True

    # --- one turn ------------------------------------------------------------------------------

    async def _turn(self, session: Session, incoming: Incoming, exists: bool) -> tuple[Session | None, Outcome, Play | None]:
        """Play the turn; returns the session to commit (None: nothing to commit), the outcome and
        the play to keep live."""
        if incoming.kind in ("timer", "event", "start"):
            played = await self._timed_turn(session, incoming, exists)
        else:
            played = await self._message_turn(session, incoming)
        outcome = played.outcome
        if outcome in ("stale", "skipped", "unknown"):
            return None, outcome, None
        return self._commit_of(session, incoming, played.state, played.messages, **played.changes), outcome, played.play

    async def _message_turn(self, session: Session, incoming: Incoming) -> Played:
        command = self.commands.get(incoming.text.split()[0]) if incoming.kind == "command" and incoming.text.strip() else None
        if command == "cancel":
            ended = Played("cancelled", None, [Text(self.cancel_reply)], changes={"due": None, "idle_at": None, "inbox": ()})
            return await self._then_queued(session, ended)
        if incoming.button is not None:
            found, answer = _button_answer(session, incoming.button)
            if not found:
                return Played("ok", session.state, [Text(self.expired_button_reply)])
            incoming = replace(incoming, value=answer, button=None)
        fresh = command == "restart" or not running(session)
        return await self._then_queued(session, await self._played(session, incoming.response, fresh))

    def _play_for(self, session: Session, fresh: bool) -> Play:
        """The suspended play of this very revision if it is in memory, else one that replays."""
        live = self._live.pop(session.key, None)
        if not fresh and live is not None and live.revision == session.revision and live.play.usable:
            return live.play
        if live is not None:
            live.play.close()
        top = self.dialog_factory()
        if fresh or session.state is None:
            state = DialogState(top.version, top.name)
        else:
            state = state_from_dict(session.state)
        return Play(top, state, self.fallback() if self.fallback else None, key=session.key, clock=self.clock)

    def _commit_of(
        self, session: Session, incoming: Incoming, state: dict[str, Any] | None, messages: list[Any],
        **changes: Any,
    ) -> Session:
        """The session after the turn: `state`, `messages` added to the outbox, the incoming id
        seen; `changes` sets other fields (the due time, the mailbox, the queue, the address)."""
        address = changes.pop("address", None) or incoming.address or session.address
        seq = session.next_seq
        new = tuple({"seq": seq + i, "to": address, "message": message_to_dict(m)} for i, m in enumerate(messages))
        now = time.time()
        return session.advanced(
            state=state,
            # each reply is marked with the worker that is to deliver it, and when
            outbox=session.outbox + tuple(self._mine(item, now) for item in new),
            seen=(*session.seen, incoming.id)[-SEEN_LIMIT:],
            address=address,
            next_seq=seq + len(new),
            last=new or session.last,
            remembered=wakeups.remembered_with(session, incoming, self.clock.now(), self.remember_ids),
            **changes,
        )

    # --- delivery ------------------------------------------------------------------------------

    async def _deliver(self, session: Session, deliver: Deliver | None, everything: bool = False) -> list[Reply]:
        """Deliver, in order, the replies of the session's outbox that are this worker's, or with
        `everything` see every reply now in the outbox out (a redelivered update: its first
        worker may have died before delivering).

        A committed reply belongs to the worker that committed it. Replies another worker committed
        moments ago are left to it, and ours that come after them wait until they are gone: no
        reply goes out twice, and a session's replies keep their order. Replies older than
        `handoff_seconds` are taken over (their worker died, or its delivery failed), claimed first
        with a conditional write so that of several workers only one sends them. Replies stored
        without a worker mark are anyone's.
        """
        delivered: list[Reply] = []
        owed = {item["seq"] for item in session.outbox if everything or item.get("by", self.worker) == self.worker}
        pause = 0.01
        while session.outbox:
            claimed = await self._claim(session)
            if claimed is not None:
                session, ready = claimed
                if ready:
                    delivered += await self._send(session, ready, deliver)
                if not any(item["seq"] in owed for item in session.outbox[ready:]):
                    return delivered
                # what we owe waits behind another worker's replies: give it time to deliver them
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.25)
            reloaded = await self.store.load(session.key)
            if reloaded is None:
                break
            session = reloaded
        return delivered

    async def _claim(self, session: Session) -> tuple[Session, int] | None:
        """The session and how many replies at the head of its outbox this worker may deliver now;
        None when claiming replies taken over from another worker lost a race (reload and retry)."""
        now = time.time()
        ready, taken_over = 0, False
        for item in session.outbox:
            if item.get("by", self.worker) != self.worker:
                if now - item.get("at", 0.0) < self.handoff_seconds:
                    break
                taken_over = True
            ready += 1
        if not taken_over:
            return session, ready
        outbox = tuple(self._mine(item, now) if n < ready else item for n, item in enumerate(session.outbox))
        claimed = await self._committed_claim(session, outbox)
        return None if claimed is None else (claimed, ready)

    def _mine(self, item: dict[str, Any], now: float) -> dict[str, Any]:
        """An outbox entry marked as this worker's to deliver, as of `now`."""
        return {**item, "by": self.worker, "at": now}

    async def _committed_claim(self, session: Session, outbox: tuple[dict[str, Any], ...]) -> Session | None:
        """`session` with its outbox re-marked, committed; None when another worker moved it first."""
        claimed = session.advanced(outbox=outbox)
        try:
            await self.store.commit(claimed)
        except Conflict:
            return None
        live = self._live.get(session.key)
        if live is not None and live.revision == session.revision:
            live.revision = claimed.revision  # the claim changed no state: the suspended play still fits
        return claimed

    async def _send(self, session: Session, count: int, deliver: Deliver | None) -> list[Reply]:
        """Deliver the first `count` replies of the outbox, then mark them delivered."""
        delivered: list[Reply] = []
        through = 0
        failure: BaseException | None = None
        for item in session.outbox[:count]:
            reply = Reply(item["seq"], message_from_dict(item["message"]), item["to"])
            if deliver is not None:
                try:
                    await deliver(reply)
                except Undeliverable as error:
                    log.warning("dropping reply %s to %s: %s", reply.seq, session.key, error)
                    through = reply.seq
                    continue
                except Exception as error:  # transient: the rest waits in the outbox
                    failure = error
                    break
            delivered.append(reply)
            through = reply.seq
        if through:
            moved_on = not await self.store.mark_delivered(session.key, session.revision, through)
            live = self._live.get(session.key)
            if live is not None:
                if moved_on or live.revision != session.revision:
                    self._forget(session.key)
                else:
                    live.revision += 1
        if failure is not None:
            pending = sum(1 for item in session.outbox if item["seq"] > through)
            raise DeliveryFailed(session.key, failure, pending) from failure
        return delivered

    # --- bookkeeping ---------------------------------------------------------------------------

    def _keep(self, key: Any, revision: int, play: Play) -> None:
        if self.max_live <= 0:
            return
        self._live[key] = _Live(revision, play)
        self._live.move_to_end(key)
        while len(self._live) > self.max_live:
            _, evicted = self._live.popitem(last=False)
            evicted.play.close()

    def _forget(self, key: Any) -> None:
        live = self._live.pop(key, None)
        if live is not None:
            live.play.close()

    @asynccontextmanager
    async def _serialised(self, key: Any) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def _report(self, outcome: TurnOutcome) -> None:
        level = logging.INFO if outcome.outcome not in ("store_error", "undelivered", "conflicted") else logging.WARNING
        log.log(
            level, "turn %s channel=%s outcome=%s replies=%d conflicts=%d duration=%.1fms",
            outcome.key, outcome.channel, outcome.outcome, outcome.replies, outcome.conflicts,
            outcome.seconds * 1000,
            extra={"session": str(outcome.key), "channel": outcome.channel, "outcome": outcome.outcome,
                   "duration_ms": round(outcome.seconds * 1000, 2)},
        )
        if self.on_turn is not None:
            self.on_turn(outcome)


def _button_answer(session: Session, ref: ButtonRef) -> tuple[bool, Any]:
    """The answer of the option a button reference points at, among the session's recent replies."""
    for item in (*session.outbox, *session.last):
        if item["seq"] == ref.seq:
            options = item["message"].get("options", ())
            if ref.index < len(options):
                label, value = options[ref.index]
                return True, label if value is None else value
    return False, None
