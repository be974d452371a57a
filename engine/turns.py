"""The Engine: one transactional turn per incoming update.

1. load the session (one turn of a session at a time within this process);
2. an incoming id seen before only re-delivers what is still in the outbox;
3. play the dialog against its state plus the new input;
4. commit state, replies (appended to the outbox) and the incoming id in one conditional write;
   a conflict means another worker moved the session: reload and redo;
5. release the session to the next turn, and deliver the outbox in order (convoflow.delivery).

Channels ask the engine, never the store: whether a conversation runs (`conversation`), moving
sessions to a new address (`move_partition`), the replies of a session for display.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, AsyncIterator, Callable, Literal, Mapping

from convoflow import wakeups
from convoflow.buttons import ButtonRef
from convoflow.clock import Clock, SystemClock
from convoflow.delivery import Deliver, Delivery, DeliveryFailed, Route, reply_of
from convoflow.dialogs import BaseDialog, resolve
from convoflow.durations import seconds_of
from convoflow.interrupts import Handler, InterruptTurns, Interrupts
from convoflow.mailbox import KEEP_EVENTS_SECONDS
from convoflow.messages import Incoming, Reply, SessionKey, Text, channel_of, message_to_dict
from convoflow.player import Play
from convoflow.plays import SuspendedPlays
from convoflow.replay import DialogState, state_from_dict
from convoflow.stores.base import SEEN_LIMIT, Conflict, Session, SessionTooLarge, Store
from convoflow.timed_turns import Played, TimedTurns
from convoflow.types import JSON
from convoflow.wakeups import Outcome

log = logging.getLogger("convoflow.engine")

Command = Literal["restart", "cancel"]

DEFAULT_COMMANDS: Mapping[str, Command] = {"/start": "restart", "/cancel": "cancel"}
CONFLICT_PAUSE = 0.005
"""Seconds; after the n-th conflict a turn waits a random time up to CONFLICT_PAUSE * 2**n (n <= 6)."""
MOVE_LIMIT = 200_000
"""Sessions `move_partition` moves at most (a Telegram supergroup holds at most 200,000 members)."""


class TooManyConflicts(Exception):
    def __init__(self, key: Any, attempts: int):
        self.key, self.attempts = key, attempts
        super().__init__(f"session {key}: gave up after {attempts} conflicting commits")


@dataclass(frozen=True)
class TurnOutcome:
    """What one `handle` call did, for logs and metrics."""

    key: SessionKey
    channel: str
    outcome: Outcome
    replies: int
    conflicts: int
    seconds: float
    pending: int = 0
    """Replies of this session still waiting in the outbox after the turn."""


@dataclass(frozen=True)
class Conversation:
    """A session as a channel may show it."""

    key: SessionKey
    running: bool
    """A conversation is in progress (started, neither finished nor cancelled)."""
    shown: tuple[Reply, ...]
    """The latest turn's replies that have been delivered."""
    waiting: int
    """Replies committed and not delivered yet."""
    outdated: bool = False
    """It runs, but was stored by code whose dialog at its top (or the fallback it is in) has since
    changed name or version: its next update starts it over, so the question it waits on can no
    longer be answered. (A change further down is found only by replaying.)"""


class Engine(TimedTurns, InterruptTurns):
    """Runs one conversation (`dialog_factory()` gives its top dialog) for every session.

    `fallback` runs before a session restarts because the code changed under it. `commands` map
    command texts to "restart" or "cancel". `max_live` bounds how many suspended dialogs are kept
    in memory to skip replays (0 disables it). `handoff_seconds` is the lease a worker holds on the
    replies it delivers (renewed while it delivers them): replies whose lease ran out are taken over
    by this one (their worker is taken to have died, or to be cut off).

    Time and the outside world (convoflow.timed_turns): `clock` gives every due time; a
    conversation waiting `idle_timeout` for the user (or an event) ends, after `on_idle` runs; an
    event no wait took is kept `keep_events` seconds; event and start ids are remembered
    `remember_ids` seconds (at least a day).

    `interrupts` maps commands or exact texts (case-insensitive) to `@dialog` functions that run
    mid-flow and then resume, cancel or restart it (convoflow.interrupts); they override
    `commands` of the same text.
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
        interrupts: Mapping[str, Handler] | None = None,
    ) -> None:
        self.dialog_factory = dialog_factory
        self.store = store
        self.fallback = fallback
        self.commands = dict(commands)
        self.app = app or dialog_factory().name
        self.apology = apology
        self.cancel_reply = cancel_reply
        self.expired_button_reply = expired_button_reply
        self.max_conflicts = max_conflicts
        self.on_turn = on_turn
        self.plays: SuspendedPlays[SessionKey] = SuspendedPlays(max_live)
        self.delivery = Delivery(store, self.plays, handoff_seconds)
        self._locks: dict[SessionKey, tuple[asyncio.Lock, int]] = {}
        self.clock = clock
        self.idle_timeout = None if idle_timeout is None else seconds_of(idle_timeout, "idle_timeout") or None
        self.on_idle = on_idle
        self.keep_events = keep_events
        self.remember_ids = max(remember_ids, wakeups.REMEMBER_IDS_SECONDS)
        self._due_listeners: list[Callable[[float], None]] = []
        self.interrupts = Interrupts.of(self.commands, interrupts)

    async def handle(
        self, incoming: Incoming, deliver: Deliver | None = None, on_committed: Callable[[], None] | None = None,
        *, only_if_running: bool = False,
    ) -> list[Reply]:
        """Process one update. Returns the replies delivered (all of them when `deliver` is None:
        the caller then sends them itself). `on_committed` is called once the update is durably
        processed (committed, or recognised as a duplicate), before delivery: the moment a channel
        may acknowledge it to the platform. The session is free for its next turn from then on.
        With `only_if_running`, an update for a session with no conversation in progress is left
        alone: nothing is committed, `on_committed` is not called, and no replies come back.

        Raises StoreError when the store fails (nothing was committed: ask for a redelivery),
        TooManyConflicts when other workers kept winning, DeliveryFailed when the turn committed
        but a reply could not be sent yet. A turn whose flow raises, or whose session would outgrow
        the store's size limit, commits the apology instead.
        """
        return (await self._handle(incoming, deliver, on_committed, only_if_running=only_if_running))[0]

    async def _handle_delivered(
        self, incoming: Incoming, deliver: Deliver | None, known: Session | None = None,
    ) -> tuple[list[Reply], Outcome]:
        """`handle`, with a delivery that failed after the commit logged, not raised (the replies
        wait in the outbox for the next attempt); returns the replies and the turn's outcome.
        `known` is the session as just read (by the scheduler): the turn starts from it instead of
        loading it (a stale one only costs a conflict and a reload)."""
        return await self._handle(incoming, deliver, raise_undelivered=False, known=known)

    async def _handle(
        self, incoming: Incoming, deliver: Deliver | None = None, on_committed: Callable[[], None] | None = None,
        *, only_if_running: bool = False, raise_undelivered: bool = True, known: Session | None = None,
    ) -> tuple[list[Reply], Outcome]:
        started = time.perf_counter()
        key = incoming.key
        outcome: Outcome | None = "store_error"
        played: Outcome | None = None
        conflicts = 0
        replies: list[Reply] = []
        pending = 0
        channel = channel_of(incoming.address, key)
        async with self.delivery.in_use(key):
            try:
                async with self._serialised(key):
                    committed, outcome, conflicts = await self._transact(incoming, only_if_running, known)
                if committed is None:
                    return [], outcome or "ok"
                if on_committed is not None:
                    on_committed()
                played = outcome
                try:
                    replies = await self.delivery.deliver(committed, deliver, everything=outcome == "duplicate")
                except DeliveryFailed as failed:
                    outcome, pending = "undelivered", failed.pending
                    if raise_undelivered:
                        raise
                    log.warning("%s", failed)
                    return [], played or "ok"
            except TooManyConflicts as error:
                outcome, conflicts = "conflicted", error.attempts
                raise
            finally:
                if outcome is not None:
                    self._report(TurnOutcome(key, channel, outcome, len(replies), conflicts,
                                             time.perf_counter() - started, pending))
        return replies, played or "ok"

    async def resume(self, key: SessionKey, deliver: Deliver | None = None) -> list[Reply]:
        """Take over and deliver whatever a session still has in its outbox (after a crash or a
        restart); see Delivery.resume."""
        return await self.delivery.resume(key, deliver)

    async def redeliver_waiting(self, route: Route, within: float = 86_400) -> int:
        """Deliver this bot's replies that have waited longer than the handoff time (their worker
        died, or their delivery failed), each through the delivery `route` gives for it (None:
        no channel here for it, left alone). Returns how many replies went out."""
        return await self.delivery.sweep(self.app, route, within)

    async def conversation(self, key: SessionKey) -> Conversation | None:
        """The session as a channel may show it, or None when there is none. Never writes."""
        session = await self.store.load(key)
        if session is None:
            return None
        waiting = {item["seq"] for item in session.outbox}
        shown = tuple(reply_of(key, item) for item in session.last if item["seq"] not in waiting)
        return Conversation(key, session.running, shown, len(waiting), session.running and self._outdated(session))

    def _outdated(self, session: Session) -> bool:
        assert session.state is not None
        state = state_from_dict(session.state)
        code: BaseDialog[Any] | None
        if state.fallback is not None:
            frame, code = state.fallback, self.fallback() if self.fallback else None
        else:
            frame = state.frame
            try:
                code = resolve(state.call) if state.call is not None else self.dialog_factory()
            except LookupError:  # a goto target gone from the code
                code = None
        return code is None or (frame.name, frame.version) != (code.name, code.version)

    async def move(self, old: SessionKey, new: SessionKey, address: dict[str, JSON]) -> bool:
        """Continue the session `old` under the key `new` (a chat that changed its id): `new`
        starts as a copy (state, seen ids, outbox readdressed to `address`) and `old` ends.
        Returns False when `old` has no conversation in progress or `new` already exists."""
        first, second = sorted((old, new))  # one lock order, so two moves never deadlock
        async with self._serialised(first), self._serialised(second):
            async with self.delivery.lane(first), self.delivery.lane(second):  # nothing of them on its way
                session = await self.store.load(old)
                if session is None or session.state is None or await self.store.load(new) is not None:
                    return False
                outbox = tuple({**item, "to": address} for item in session.outbox)
                await self.store.commit(replace(session, key=new, revision=0, outbox=outbox, address=address).advanced())
                await self.store.commit(session.advanced(state=None, outbox=(), due=None, idle_at=None))
                self.plays.forget(old)
                self.delivery.warm.forget(old)
        log.info("session %s moved to %s", old, new)
        return True

    async def move_partition(self, old: str, new: str, address: dict[str, JSON]) -> int:
        """Move every session of this bot in partition `old` and the partitions under it to the same
        place under `new` (`telegram:7:-4001:5` to `telegram:7:-1004001:5`), readdressed to
        `address`. Returns how many moved."""
        moved = 0
        for session in await self.store.list_sessions(old, limit=MOVE_LIMIT):
            if session.key.app == self.app:
                target = SessionKey(new + session.key.partition.removeprefix(old), self.app)
                moved += await self.move(session.key, target, address)
        return moved

    # --- one turn ------------------------------------------------------------------------------

    async def _transact(
        self, incoming: Incoming, only_if_running: bool, known: Session | None = None,
    ) -> tuple[Session | None, Outcome | None, int]:
        """Load (unless `known`), play and commit, redone on conflicts. Returns the committed session
        (None when the update is left alone), the outcome and the number of conflicts."""
        key = incoming.key
        conflicts = 0
        # A warm session is the record this worker wrote last: committed on unread (the write is
        # conditional), but a turn that would end without a write reads the store first.
        warm = None if known is not None and known.key == key else self.delivery.warm.get(key)
        session = known if known is not None and known.key == key else warm or await self.store.load(key) or Session(key)
        while True:
            if warm is not None and (incoming.id in session.seen or (only_if_running and not session.running)):
                warm, session = None, await self.store.load(key) or Session(key)
                continue
            if incoming.id in session.seen or wakeups.is_remembered(session, incoming.id, self.clock.now()):
                return session, "duplicate", conflicts
            if only_if_running and not session.running:
                return None, None, conflicts
            played = await self._turn(session, incoming)
            if played.outcome in ("stale", "skipped", "unknown"):  # nothing to commit
                if warm is not None:
                    played.discard()
                    warm, session = None, await self.store.load(key) or Session(key)
                    continue
                return None, played.outcome, conflicts
            while True:
                try:
                    committed = await self._commit(session, incoming, played)
                except BaseException as error:
                    self.delivery.warm.forget(key)  # a failed write may have landed, or a reload is due
                    if not isinstance(error, Conflict):
                        raise
                    stale, warm = warm is not None, None
                    conflicts += 1
                    if conflicts >= self.max_conflicts:
                        played.discard()
                        raise TooManyConflicts(key, conflicts) from None
                    reloaded = await self.store.load(key) or Session(key)
                    if incoming.id not in reloaded.seen and _same_conversation(reloaded, session):
                        # Only its outbox moved on (replies delivered or claimed meanwhile, by this
                        # worker or another): the turn played still holds; commit it again.
                        session = reloaded
                        continue
                    played.discard()  # played from a state that lost the race
                    if stale:  # the record this worker knew was out of date: no race to back off from
                        session = reloaded
                        break
                    # A random pause spreads out workers racing on one session, so the one that
                    # must replay is not beaten every time by the one that need not.
                    await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE * 2 ** min(conflicts, 6)))
                    session = await self.store.load(key) or Session(key)
                    break
                self.delivery.warm.wrote(committed)
                if played.play is not None:
                    self.plays.keep(key, committed.revision, played.play)
                if committed.due is not None:
                    for listener in self._due_listeners:
                        listener(committed.due)
                return committed, played.outcome, conflicts

    async def _commit(self, session: Session, incoming: Incoming, played: Played) -> Session:
        """Commit the turn played on `session`; returns what was committed."""
        session = await self.delivery.caught_up(session)  # an earlier reply of it marked delivered meanwhile
        committed = self._commit_of(session, incoming, played.state, played.messages, **played.changes)
        try:
            await self.store.commit(committed)
        except SessionTooLarge as error:
            # The flow grew its session past the store's limit: drop this turn and tell the user,
            # rather than have the platform redeliver forever (a timer is not fired again either).
            log.error("turn dropped in session %s: %s", session.key, error)
            played.discard()
            played.outcome, played.state, played.messages = "failed", session.state, [Text(self.apology)]
            played.changes = {"due": None} if incoming.kind == "timer" else {}
            committed = self._commit_of(session, incoming, played.state, played.messages, **played.changes)
            await self.store.commit(committed)
        return committed

    async def _turn(self, session: Session, incoming: Incoming) -> Played:
        """Play the turn: the outcome, the state and replies to commit, the play to keep live, and
        the session's other changes (its due time, mailbox, queue)."""
        if incoming.kind in ("timer", "event", "start"):
            return self._kept_interrupted(session, incoming, await self._timed_turn(session, incoming))
        if incoming.button is not None:
            found, answer = _button_answer(session, incoming.button)
            if not found:
                return Played("ok", session.state, [Text(self.expired_button_reply)])
            incoming = replace(incoming, value=answer, button=None)
        interrupted = await self._interrupted_turn(session, incoming)  # /start, /cancel, the bot's interrupts
        if interrupted is not None:
            return interrupted
        return await self._then_queued(session, await self._played(session, incoming.response, not session.running))

    def _play_for(self, session: Session, fresh: bool) -> Play:
        """The suspended play of this very revision if it is in memory, else one that replays."""
        if not fresh:
            kept = self.plays.take(session.key, session.revision)
            if kept is not None:
                return kept
        else:
            self.plays.forget(session.key)
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
        seen; `changes` sets its other fields (the due time, the mailbox, the queue, the address)."""
        address = changes.pop("address", None) or incoming.address or session.address
        seq = session.next_seq
        new = tuple({"seq": seq + i, "to": address, "message": message_to_dict(m)} for i, m in enumerate(messages))
        now = time.time()
        return session.advanced(
            state=state,
            # each reply is marked with the worker that is to deliver it, and when
            outbox=session.outbox + tuple(self.delivery.mine(item, now) for item in new),
            seen=(*session.seen, incoming.id)[-SEEN_LIMIT:],
            address=address,
            next_seq=seq + len(new),
            last=new or session.last,
            remembered=wakeups.remembered_with(session, incoming, self.clock.now(), self.remember_ids),
            **changes,
        )

    # --- bookkeeping ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _serialised(self, key: SessionKey) -> AsyncIterator[None]:
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


def _same_conversation(now: Session, before: Session) -> bool:
    """Whether `now` differs from `before` in its outbox alone (and revision and time)."""
    return (now.state == before.state and now.next_seq == before.next_seq and now.seen == before.seen
            and now.last == before.last and now.address == before.address)


def _button_answer(session: Session, ref: ButtonRef) -> tuple[bool, Any]:
    """The answer of the option a button reference points at, among the session's recent replies."""
    for item in (*session.outbox, *session.last):
        if item["seq"] == ref.seq:
            options = item["message"].get("options", ())
            if ref.index < len(options):
                label, value = options[ref.index]
                return True, label if value is None else value
    return False, None
