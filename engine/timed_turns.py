"""The Engine's turns that no user message starts: a timer firing, an outside event, a proactive
start, and the conversation that starts when the running one ends (a queued start). Each is one
turn like any other (loaded, played, committed conditionally, delivered through the outbox); this
part of the Engine decides what it plays.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from convoflow import wakeups
from convoflow.clock import Clock
from convoflow.delivery import Deliver
from convoflow.dialogs import BaseDialog, resolve
from convoflow.mailbox import Fired, Signal
from convoflow.messages import Incoming, Reply, SessionKey, Text, as_message
from convoflow.player import Play
from convoflow.plays import SuspendedPlays, close_quietly
from convoflow.replay import DialogState
from convoflow.stores.base import Session
from convoflow.types import JSON
from convoflow.values import decode
from convoflow.wakeups import IfRunning, Outcome, SignalOutcome, StartOutcome

log = logging.getLogger("convoflow.engine")


@dataclass
class Played:
    """A turn played, not yet committed: its outcome, the state and replies to commit, the play to
    keep live, and the other session fields it changes (due time, mailbox, queue)."""

    outcome: Outcome
    state: dict[str, Any] | None
    messages: list[Any]
    play: Play | None = None
    """The play suspended after it, to keep for the next turn."""
    changes: dict[str, Any] = field(default_factory=dict)
    taken: bool = False
    """A wait took the turn's arrival (an event a flow waited for, say)."""

    def discard(self) -> None:
        if self.play is not None:
            close_quietly(self.play)
            self.play = None


class TimedTurns:
    """Mixed into the Engine: `signal`, `start`, `fire` and the turns they play."""

    store: Any
    clock: Clock
    app: str
    dialog_factory: Callable[[], BaseDialog[Any]]
    fallback: Callable[[], BaseDialog[Any]] | None
    apology: str
    idle_timeout: float | None
    on_idle: Callable[[], BaseDialog[Any]] | None
    keep_events: float
    plays: SuspendedPlays[SessionKey]
    _due_listeners: list[Callable[[float], None]]

    # --- the API -------------------------------------------------------------------------------

    async def signal(self, key: SessionKey, name: str, data: JSON, event_id: str, *,
                     deliver: Deliver | None = None) -> SignalOutcome:
        """Deliver the outside event `name` with `data` to the session `key`: one turn, taken by the
        wait the flow is suspended at when it waits for that event, else kept for a later wait (for
        `keep_events` seconds). `event_id` de-duplicates it for at least a day. The replies go
        out with `deliver` (when None, they are returned for the caller to send)."""
        replies, outcome = await self._handle_delivered(wakeups.event_incoming(key, name, data, event_id), deliver)
        if outcome == "duplicate" or outcome == "kept" or outcome == "unknown" or outcome == "failed":
            return SignalOutcome(outcome, tuple(replies))
        return SignalOutcome("delivered", tuple(replies))

    async def start(self, key: SessionKey, dialog: BaseDialog[Any] | None, address: dict[str, JSON], start_id: str,
                    if_running: IfRunning = "skip", *, deliver: Deliver | None = None) -> StartOutcome:
        """Start a conversation the bot opens: `dialog` (a @dialog call; None: the bot's own) for
        the session `key`, its replies addressed to `address`. When one is running already,
        `if_running` skips this start, replaces the running one, or queues this one until the
        running one ends. `start_id` de-duplicates it for at least a day."""
        replies, outcome = await self._handle_delivered(
            wakeups.start_incoming(key, dialog, address, start_id, if_running), deliver)
        if outcome == "replaced" or outcome == "queued" or outcome == "skipped" or outcome == "duplicate" or outcome == "failed":
            return StartOutcome(outcome, tuple(replies))
        return StartOutcome("started", tuple(replies))

    async def fire(self, key: SessionKey, due: float, deliver: Deliver | None = None,
                   session: Session | None = None) -> bool:
        """Fire the timer of session `key` due at `due` (what the Scheduler calls, with the `session`
        it just read): True when this call played and committed it, False when another worker had,
        or the session is no longer due then."""
        _, outcome = await self._handle_delivered(wakeups.timer_incoming(key, due), deliver, session)
        return outcome not in ("duplicate", "stale")

    def watch_due(self, listener: Callable[[float], None]) -> None:
        """Call `listener(due)` whenever a turn of this engine commits a session due at `due`."""
        self._due_listeners.append(listener)

    # --- the turns -----------------------------------------------------------------------------

    async def _timed_turn(self, session: Session, incoming: Incoming) -> Played:
        """The turn of a timer, an event or a start."""
        now = self.clock.now()
        if incoming.kind == "timer":
            due = wakeups.fired_due(incoming)
            if session.due is None or session.due > due:
                return Played("stale", None, [])  # the user answered meanwhile, or it fired already
            if wakeups.idle_is_due(session, due, now):
                return await self._then_queued(session, await self._ended_idle(session))
            return await self._then_queued(session, await self._played(session, Fired(due), fresh=False))
        if incoming.kind == "event":
            if session.revision == 0:  # never stored: no conversation to tell
                return Played("unknown", None, [])
            signal = Signal(incoming.text, incoming.value, incoming.id.removeprefix("event:"))
            if not session.running:
                mailbox = wakeups.mailbox_of(session, self.keep_events)
                mailbox.keep_event(signal, now)
                return Played("kept", session.state, [], changes=wakeups.mailbox_fields(mailbox))
            played = await self._played(session, signal, fresh=False)
            if played.outcome != "failed" and not played.taken:
                played.outcome = "kept"
            return await self._then_queued(session, played)
        return await self._started(session, incoming)

    async def _started(self, session: Session, incoming: Incoming) -> Played:
        start = incoming.value
        assert isinstance(start, dict)
        spec, if_running = start["dialog"], start["if_running"]
        if session.running:
            if if_running == "skip" or (if_running == "queue" and len(session.queued) >= wakeups.QUEUE_LIMIT):
                return Played("skipped", None, [])
            if if_running == "queue":
                entry = {"dialog": spec, "id": incoming.id, "address": incoming.address}
                # the running conversation's replies still go where they went
                return Played("queued", session.state, [], changes={"queued": (*session.queued, entry),
                                                                     "address": session.address})
        played = await self._played(session, None, fresh=True, start=spec)
        if played.outcome != "failed" and session.running:
            played.outcome = "replaced"
        elif played.outcome != "failed":
            played.outcome = "started"
        return await self._then_queued(session, played)

    async def _then_queued(self, session: Session, played: Played) -> Played:
        """A turn that ended the conversation starts the first start queued behind it."""
        queued = played.changes.get("queued", session.queued)
        still = played.state is not None and "result" not in played.state
        if not queued or still or played.outcome == "failed":
            return played
        entry, rest = queued[0], tuple(queued[1:])
        ended = replace(session, state=played.state, inbox=(), queued=rest,
                        events=played.changes.get("events", session.events))
        following = await self._played(ended, None, fresh=True, start=entry["dialog"])
        if following.outcome == "failed":
            log.error("queued start %s of session %s failed; dropped", entry["id"], session.key)
            played.changes["queued"] = rest
            return played
        changes = {**played.changes, **following.changes, "queued": rest}
        if entry.get("address"):
            changes["address"] = entry["address"]
        return Played(played.outcome, following.state, played.messages + following.messages, following.play, changes)

    async def _ended_idle(self, session: Session) -> Played:
        """The conversation waited too long for the user: it ends, and `on_idle` says so."""
        self.plays.forget(session.key)
        messages: list[Any] = []
        if self.on_idle is not None:
            dialog = self.on_idle()
            play = Play(dialog, DialogState(dialog.version, dialog.name), key=session.key, clock=self.clock)
            try:
                play.begin(None)
                await play.step_async()
                messages = [as_message(m) for m in play.outbox]
            except Exception:
                log.exception("on_idle failed in session %s; the conversation ends without it", session.key)
            finally:
                close_quietly(play)
        log.info("session %s ended: idle for %g s", session.key, self.idle_timeout or 0)
        return Played("idle", None, messages, changes={"due": None, "idle_at": None, "inbox": ()})

    async def _played(self, session: Session, arrival: Any, fresh: bool, start: Any = None) -> Played:
        """Play the session's flow with `arrival`; with `start` (a stored dialog spec, or None for
        the bot's own dialog when `fresh`), a new conversation instead of the running one."""
        try:
            play = self._play_for(session, fresh) if start is None else self._play_of(session, start)
            play.begin(arrival, wakeups.mailbox_of(session, self.keep_events, answers=not fresh))
            done = await play.step_async()
            messages = [as_message(m) for m in play.outbox]
            state = play.state.to_dict()
        except BaseException as error:
            # Whatever flow code raises (SystemExit from argparse, KeyboardInterrupt, GeneratorExit
            # misused) ends this turn alone; only a cancellation of the task itself goes on.
            if isinstance(error, asyncio.CancelledError) and _cancelling():
                raise
            log.error("flow failed in session %s; it stays at its last committed state", session.key, exc_info=True)
            # A timer turn that fails is not fired again and again: the session waits for the user.
            changes = {"due": None} if isinstance(arrival, Fired) else {}
            return Played("failed", session.state, [Text(self.apology)], changes=changes)
        outcome: Outcome = "timed_out" if play.timed_out else "finished" if done else "restarted" if play.mismatch else "ok"
        changes = {**wakeups.mailbox_fields(play.mailbox),
                   **wakeups.schedule(play, not done, session, self.clock.now(), self.idle_timeout)}
        return Played(outcome, state, messages, None if done else play, changes, play.arrivals.taken)

    def _play_of(self, session: Session, spec: Any) -> Play:
        """A play of a new conversation with the dialog `spec` names (None: the bot's own)."""
        self.plays.forget(session.key)
        top = self.dialog_factory()
        state = DialogState(top.version, top.name)
        if spec is not None:
            target = resolve(decode(spec))
            state = DialogState(target.version, target.name)
            state.call = spec
        return Play(top, state, self.fallback() if self.fallback else None, key=session.key, clock=self.clock)

    # --- provided by the Engine ----------------------------------------------------------------

    def _play_for(self, session: Session, fresh: bool) -> Play:
        raise NotImplementedError

    async def _handle_delivered(
        self, incoming: Incoming, deliver: Deliver | None, known: Session | None = None,
    ) -> tuple[list[Reply], Outcome]:
        raise NotImplementedError


def _cancelling() -> bool:
    """Whether the running task is being cancelled (as at shutdown), not just handed a
    CancelledError some flow code raised."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
