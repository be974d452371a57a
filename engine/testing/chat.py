"""`Chat`: talk to a bot in a test, in-process, with no network and a clock that moves when told.

Every action is a real turn of the real Engine on a real store (memory by default, or any store
URL), so a test sees what users would: the same replay, the same commits, the same timers.

    async with Chat("bots/signup.py") as chat:
        assert await chat.say("hi") == ["Welcome! Let's get you signed up.", "What's your name?"]
        await chat.advance(minutes=10)          # the fake clock moves; due timers fire
        await chat.signal("paid", {"order": "A-1"})
"""

from __future__ import annotations

import itertools
import logging
import uuid
from datetime import timedelta
from typing import Any, Awaitable, Callable

from convoflow.clock import ManualClock
from convoflow.messages import VIA, Incoming, IncomingKind, Media, Message, Reply, SessionKey, Text
from convoflow.scheduler import Scheduler
from convoflow.stores import Store, open_store
from convoflow.stores.base import Session
from convoflow.turns import Engine, TurnOutcome
from convoflow.types import JSON
from convoflow.values import decode
from convoflow.testing.bots import bot_under_test
from convoflow.testing.lines import DONE, bot_lines, event_line, said, wait_line, you, you_press, you_send

CHANNEL = "test"
"""The channel name in the addresses of a Chat's session."""
TIMER_ROUNDS = 10_000
"""Timers `advance` fires at most on its way (a reminder repeating every second for hours...)."""


class ChatError(AssertionError):
    """The conversation did not go as the test said: the message shows it so far."""


class FlowFailed(ChatError):
    """The flow raised during a turn (a user would have got the apology)."""


class Replies(list[str]):
    """The bot's messages of one turn (see `said`), with the conversation so far (`conversation`),
    which the pytest plugin shows when an assertion on them fails."""

    conversation: str = ""


class Chat:
    """One user's conversation with `bot` (a @dialog function, a bot module, or what `convoflow
    run` takes: `"signup"`, `"bots/signup.py"`, `"mypkg.mybot:main"`).

    `store` is a store URL or a Store (default `memory://`); `user` names the session
    (`test:<user>/<app>`), so several chats may share one store. `clock` is the ManualClock the
    engine runs on (one starting at 2026-01-01 by default). With `replay_every_turn`, no play is
    kept in memory between turns: each turn replays the stored record, as after a restart. With
    `raise_errors` (the default) a turn whose flow raises fails the test with FlowFailed.
    """

    def __init__(self, bot: Any, store: str | Store = "memory://", *, user: str = "test",
                 clock: ManualClock | None = None, replay_every_turn: bool = False, raise_errors: bool = True) -> None:
        found = bot_under_test(bot)
        self.clock = clock or ManualClock()
        self.store = open_store(store) if isinstance(store, str) else store
        self._owns_store = isinstance(store, str)
        self._outcomes: list[TurnOutcome] = []
        self.engine = Engine(found.dialog, self.store, found.fallback, app=found.app, clock=self.clock,
                             idle_timeout=found.idle_timeout, on_idle=found.on_idle, interrupts=found.interrupts,
                             max_live=0 if replay_every_turn else 10_000, on_turn=self._outcomes.append)
        self.key = SessionKey(f"{CHANNEL}:{user}", self.engine.app)
        self.address: dict[str, JSON] = {VIA: CHANNEL, "user": user}
        self.scheduler = Scheduler(self.engine, self._deliver, wanted=self.key.__eq__)
        self.raise_errors = raise_errors
        self.messages: list[Message] = []
        """Every message the bot sent, in order."""
        self.lines: list[str] = []
        """The conversation so far, in the transcript format."""
        self._ids = itertools.count(1)
        self._run = uuid.uuid4().hex[:8]  # ids unique across chats on one store (a seen id is a duplicate)
        self._turn: list[Reply] = []
        self._session: Session | None = None
        self._ended_shown = False

    async def __aenter__(self) -> Chat:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the store, when the Chat opened it from a URL."""
        if self._owns_store:
            await self.store.close()

    # --- what the user does ----------------------------------------------------------------------

    async def say(self, text: str) -> Replies:
        """Send `text` (a `/command` as a command); returns the replies of that turn."""
        kind: IncomingKind = "command" if text.strip().startswith("/") else "text"
        incoming = Incoming(self.key, self._id("msg"), kind, text, user=self.key.partition, address=self.address)
        return await self._act(you(text), lambda: self.engine.handle(incoming, self._deliver))

    async def press(self, label: str) -> Replies:
        """Press the button labelled `label` on the latest message that shows buttons."""
        shown = next((m for m in reversed(self.messages) if isinstance(m, Text) and m.options), None)
        if shown is None:
            raise ChatError(self._story(f"cannot press {label!r}: the bot has shown no buttons"))
        option = next((o for o in shown.options if o.label == label), None)
        if option is None:
            labels = " | ".join(o.label for o in shown.options)
            raise ChatError(self._story(f"cannot press {label!r}: the buttons shown are {labels}"))
        incoming = Incoming(self.key, self._id("press"), "button", label, option.answer, user=self.key.partition,
                            address=self.address)
        return await self._act(you_press(label), lambda: self.engine.handle(incoming, self._deliver))

    async def send_media(self, source: str, kind: str = "image", caption: str = "") -> Replies:
        """Send an image (or with `kind="file"` a file): `source` stands for its URL or file id."""
        if kind not in ("image", "file"):
            raise ValueError(f"kind must be 'image' or 'file', not {kind!r}")
        media = Media("image" if kind == "image" else "file", source, caption)
        incoming = Incoming(self.key, self._id("media"), "media", caption, user=self.key.partition,
                            address=self.address, media=media)
        return await self._act(you_send(kind, source, caption), lambda: self.engine.handle(incoming, self._deliver))

    async def advance(self, delta: float | timedelta = 0, *, seconds: float = 0, minutes: float = 0,
                      hours: float = 0, days: float = 0) -> Replies:
        """Move the clock on (`delta` seconds or a timedelta, plus the keywords) and fire every
        timer of this conversation that falls due on the way, each at its own time; returns the
        replies of those timers."""
        if isinstance(delta, timedelta):
            delta = delta.total_seconds()
        total = delta + seconds + minutes * 60 + hours * 3600 + days * 86_400
        if total < 0:
            raise ValueError(f"the clock cannot go back ({total:g} seconds)")
        return await self._act(wait_line(total), lambda: self._advance(self.clock.now() + total))

    async def signal(self, name: str, data: Any = None, event_id: str | None = None) -> Replies:
        """Deliver the outside event `name` with `data` (JSON), as `POST /events` does."""

        async def deliver() -> None:
            outcome = await self.engine.signal(self.key, name, data, event_id or self._id("event"), deliver=self._deliver)
            if outcome.status == "unknown":
                raise ChatError(self._story(f"event {name!r}: no conversation yet (say something first)"))

        return await self._act(event_line(name, data), deliver)

    # --- what the test looks at ------------------------------------------------------------------

    @property
    def replies(self) -> list[str]:
        """Every message the bot sent so far (see `said`)."""
        return [said(message) for message in self.messages]

    @property
    def buttons(self) -> list[str]:
        """The labels of the buttons on the bot's latest message ([] when it shows none)."""
        latest = self.messages[-1] if self.messages else None
        return [o.label for o in latest.options] if isinstance(latest, Text) else []

    @property
    def done(self) -> bool:
        """The conversation has ended (finished, cancelled, timed out or expired)."""
        return self._session is not None and not self._session.running

    @property
    def result(self) -> Any:
        """What the bot's dialog returned; a ChatError while the conversation still runs."""
        if not self.done:
            raise ChatError(self._story("the conversation has not ended, so it has no result yet"))
        assert self._session is not None
        state = self._session.state or {}
        return decode(state["result"]["value"]) if "result" in state else None

    @property
    def transcript(self) -> str:
        """The conversation so far, in the transcript format."""
        return "\n".join(self.lines)

    # --- the turns -------------------------------------------------------------------------------

    async def _act(self, line: str, turn: Callable[[], Awaitable[Any]]) -> Replies:
        self._turn = []
        self._outcomes.clear()
        self.lines.append(line)
        with _FlowErrors() as errors:
            await turn()
        replies = Replies(said(reply.message) for reply in self._turn)
        for reply in self._turn:
            self.messages.append(reply.message)
            self.lines.extend(bot_lines(reply.message))
        self._session = await self.store.load(self.key)
        if self.done and not self._ended_shown:
            self.lines.append(DONE)
        self._ended_shown = self.done
        replies.conversation = self.transcript
        failed = [outcome for outcome in self._outcomes if outcome.outcome == "failed"]
        if failed and self.raise_errors:
            raise FlowFailed(self._story(f"the flow raised in this turn ({line}):\n{errors.text()}"))
        return replies

    async def _advance(self, until: float) -> None:
        for _ in range(TIMER_ROUNDS):
            session = await self.store.load(self.key)
            if session is None or session.due is None or session.due > until:
                break
            self.clock.set(max(self.clock.now(), session.due))
            if not await self.scheduler.fire_due():
                break  # due, yet nothing fired: not ours to fire (nothing else would either)
        self.clock.set(until)
        await self.scheduler.fire_due()

    async def _deliver(self, reply: Reply) -> None:
        self._turn.append(reply)

    def _id(self, kind: str) -> str:
        return f"{CHANNEL}:{self._run}:{kind}:{next(self._ids)}"

    def _story(self, problem: str) -> str:
        shown = "\n".join(f"  {line}" for line in self.lines) or "  (nothing yet)"
        return f"{problem}\n\nthe conversation so far ({self.key}):\n{shown}"


class _FlowErrors(logging.Handler):
    """Keeps the tracebacks the engine logs while a turn runs (a flow that raised)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        formatter = logging.Formatter("%(message)s")
        return "\n".join(formatter.format(record) for record in self.records) or "(no traceback logged)"

    def __enter__(self) -> _FlowErrors:
        logging.getLogger("convoflow.engine").addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        logging.getLogger("convoflow.engine").removeHandler(self)
