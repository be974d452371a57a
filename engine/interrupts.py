"""Interruptions: global handlers a user reaches mid-flow ("/help", "help", "/cancel").

A bot maps commands or exact texts (case-insensitive) to handlers. A handler is a `@dialog`
function called with no arguments, or one of the built-in actions "restart" and "cancel" (what
`/start` and `/cancel` are by default). A match runs the handler's dialog instead of handing the
text to the flow; the handler may ask questions of its own, and its return value says how the
flow goes on: "resume" (or None, the default), "cancel" or "restart".

The interruption lives in the session's state beside the interrupted flow's own record, under
`interrupt` (the handler's record, the flow's prompt to show again), so any process continues it.
The flow's record is untouched meanwhile: its timers still fire and its events still reach it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from convoflow.dialogs import BaseDialog, is_dialog
from convoflow.frames import INPUT
from convoflow.messages import Incoming, Text, as_message, message_from_dict
from convoflow.player import Play
from convoflow.plays import SuspendedPlays, close_quietly
from convoflow.replay import DialogState, state_from_dict
from convoflow.stores.base import Session
from convoflow.timed_turns import Played
from convoflow.waits import FIRST

log = logging.getLogger("convoflow.engine")

Then = Literal["resume", "cancel", "restart"]
"""What a handler's dialog returns to say how the interrupted flow goes on (None: resume)."""
Builtin = Literal["restart", "cancel"]
Handler = Callable[[], BaseDialog[Any]]

INTERRUPT = "interrupt"
"""The key of a running interruption in a session's state."""
THEN: tuple[Then, ...] = ("resume", "cancel", "restart")


@dataclass(frozen=True)
class Interrupts:
    """The handlers by their casefolded key: built-in actions or dialog functions."""

    handlers: Mapping[str, Builtin | Handler]

    @classmethod
    def of(cls, commands: Mapping[str, Builtin], interrupts: Mapping[str, Handler] | None) -> Interrupts:
        """The Engine's `commands` (built-in actions), then the bot's `interrupts` (a key in both:
        the bot's handler wins). Raises ValueError or TypeError naming a malformed entry."""
        handlers: dict[str, Builtin | Handler] = {}
        for key, action in commands.items():
            if action not in ("restart", "cancel"):
                raise ValueError(f"command {key!r} maps to {action!r}; use 'restart' or 'cancel'")
            handlers[_key(key)] = action
        if interrupts is not None and not isinstance(interrupts, Mapping):
            raise TypeError(f"interrupts must be a dict of texts to @dialog functions, not {type(interrupts).__name__}")
        for key, handler in (interrupts or {}).items():
            if not is_dialog(handler):
                raise TypeError(f"interrupts[{key!r}] must be a @dialog function called with no arguments, not {handler!r}")
            handlers[_key(key)] = handler
        return cls(handlers)

    def match(self, incoming: Incoming) -> str | None:
        """The key of the handler a typed message reaches: the whole text, or a command's first
        word (`/help me` reaches `/help`). Buttons, media and timed turns reach none."""
        if incoming.kind not in ("text", "command") or not isinstance(incoming.text, str):
            return None
        text = " ".join(incoming.text.split()).casefold()
        if text in self.handlers:
            return text
        if text.startswith("/"):
            word = text.split(" ", 1)[0]
            return word if word in self.handlers else None
        return None

    @property
    def commands(self) -> list[str]:
        """The keys that are commands (`/help`), for a platform's command menu."""
        return [key for key in self.handlers if key.startswith("/") and " " not in key]


def _key(key: object) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"an interrupt's key must be a non-empty text, not {key!r}")
    return " ".join(key.split()).casefold()


class InterruptTurns:
    """Mixed into the Engine: the turns an interruption plays."""

    interrupts: Interrupts
    cancel_reply: str
    apology: str
    clock: Any
    plays: SuspendedPlays[Any]

    async def _interrupted_turn(self, session: Session, incoming: Incoming) -> Played | None:
        """The turn of a message that starts an interruption or answers a running one; None when
        it is for the flow."""
        key = self.interrupts.match(incoming)
        running: dict[str, Any] | None = (session.state or {}).get(INTERRUPT)
        if key is None:
            return None if running is None else await self._interruption(session, running, incoming.response)
        handler = self.interrupts.handlers[key]
        if handler == "cancel":
            return await self._cancelled(session, [Text(self.cancel_reply)])
        if handler == "restart":
            return await self._restarted(session, incoming, [])
        # A match during an interruption starts that handler over; the flow's prompt stays the same.
        prompt = running["prompt"] if running is not None else _prompt(session)
        return await self._interruption(session, {"on": key, "prompt": prompt}, None)

    def _kept_interrupted(self, session: Session, incoming: Incoming, played: Played) -> Played:
        """A timer or an event moved the interrupted flow: the interruption goes on beside it."""
        running = (session.state or {}).get(INTERRUPT)
        if running is None or incoming.kind not in ("timer", "event") or played.state is None:
            return played
        if INTERRUPT not in played.state:
            played.state = {**played.state, INTERRUPT: running}
        return played

    async def _interruption(self, session: Session, record: dict[str, Any], arrival: Any) -> Played:
        """Play the handler's dialog of `record` (its state there, or a new one) with `arrival`."""
        flow = _without_interrupt(session.state)
        handler = self.interrupts.handlers.get(record["on"])
        if not callable(handler):  # the handler left the code (or became built-in): back to the flow
            return self._resumed(session, flow, record, [])
        dialog = handler()
        stored = record.get("state")
        state = DialogState(dialog.version, dialog.name) if stored is None else state_from_dict(stored)
        play = Play(dialog, state, key=session.key, clock=self.clock)
        try:
            play.begin(arrival)
            done = await play.step_async()
            messages = [as_message(m) for m in play.outbox]
            then = _then(play.state.result.return_value if done and play.state.result else None, record["on"])
            saved = play.state.to_dict()
        except BaseException as error:
            if isinstance(error, asyncio.CancelledError) and _cancelling():
                raise
            log.error("interrupt handler %r failed in session %s; back to the flow", record["on"], session.key,
                      exc_info=True)
            resumed = self._resumed(session, flow, record, [Text(self.apology)])
            resumed.outcome = "failed"
            return resumed
        finally:
            close_quietly(play)
        if not done:
            waiting = flow if flow is not None else _finished(dialog)
            return Played("ok", {**waiting, INTERRUPT: {**record, "state": saved}}, messages,
                          self.plays.take(session.key, session.revision))
        if then == "cancel":
            return await self._cancelled(session, messages)
        if then == "restart":
            return await self._restarted(session, None, messages)
        return self._resumed(session, flow, record, messages)

    def _resumed(self, session: Session, flow: dict[str, Any] | None, record: dict[str, Any], messages: list[Any]) -> Played:
        """Back to the flow as it was; a flow waiting for an answer shows its prompt again."""
        prompt = record.get("prompt")
        if prompt is not None and flow is not None and "result" not in flow and _waits_for_answer(flow):
            messages = [*messages, message_from_dict(prompt)]
        # the flow's suspended play (if this process has it) is still good: its record is untouched
        return Played("ok", flow, messages, self.plays.take(session.key, session.revision))

    async def _cancelled(self, session: Session, messages: list[Any]) -> Played:
        self.plays.forget(session.key)
        ended = Played("cancelled", None, messages, changes={"due": None, "idle_at": None, "inbox": ()})
        return await self._then_queued(session, ended)

    async def _restarted(self, session: Session, incoming: Incoming | None, messages: list[Any]) -> Played:
        played = await self._played(session, None if incoming is None else incoming.response, True)
        played.messages = [*messages, *played.messages]
        return await self._then_queued(session, played)

    # --- provided by the Engine ----------------------------------------------------------------

    async def _played(self, session: Session, arrival: Any, fresh: bool, start: Any = None) -> Played:
        raise NotImplementedError

    async def _then_queued(self, session: Session, played: Played) -> Played:
        raise NotImplementedError


def _then(value: Any, on: str) -> Then:
    if value is None:
        return "resume"
    if value in THEN:
        return value
    log.error("interrupt handler %r returned %r; expected None, 'resume', 'cancel' or 'restart': resuming", on, value)
    return "resume"


def _without_interrupt(state: dict[str, Any] | None) -> dict[str, Any] | None:
    if state is None or INTERRUPT not in state:
        return state
    return {name: value for name, value in state.items() if name != INTERRUPT}


def _finished(dialog: BaseDialog[Any]) -> dict[str, Any]:
    """The state kept beside an interruption when no conversation ran: a finished one, so the
    session is not taken for running and the next message after it starts afresh."""
    return {**DialogState(dialog.version, dialog.name).to_dict(), "result": {"value": None}}


def _waits_for_answer(flow: dict[str, Any]) -> bool:
    state = state_from_dict(flow)
    waiting = (state.fallback or state.frame).waiting()
    return waiting is not None and waiting.name in (INPUT, FIRST)


def _prompt(session: Session) -> dict[str, Any] | None:
    """What the flow sent last before it waited (its latest turn's last reply)."""
    if session.state is None or "result" in session.state or not session.last:
        return None
    return dict(session.last[-1]["message"])


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


__all__ = ["INTERRUPT", "Interrupts", "InterruptTurns", "Then"]
