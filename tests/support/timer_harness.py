"""An Engine on a real store with a manual clock and its Scheduler: a test says things, moves the
clock and sees what the bot sent, as a user of a testing kit would."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from convoflow import Incoming, ManualClock, Reply, SessionKey, Text
from convoflow.turns import Engine, TurnOutcome
from convoflow.scheduler import Scheduler

_ids = itertools.count(1)


@dataclass
class TimerHarness:
    engine: Engine
    clock: ManualClock
    sent: list[Reply] = field(default_factory=list)
    outcomes: list[TurnOutcome] = field(default_factory=list)
    scheduler: Scheduler = field(init=False)

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(self.engine, self.deliver)
        previous = self.engine.on_turn
        self.engine.on_turn = lambda outcome: (self.outcomes.append(outcome), previous and previous(outcome))

    async def deliver(self, reply: Reply) -> None:
        self.sent.append(reply)

    def key(self, user: str = "ada") -> SessionKey:
        return SessionKey(f"test:{user}", self.engine.app)

    async def say(self, text: str, user: str = "ada") -> list[str]:
        kind = "command" if text.startswith("/") else "text"
        return await self._texts(self.engine.handle(
            Incoming(self.key(user), f"u{next(_ids)}", kind, text, address={"user": user}), self.deliver))

    async def press(self, value: Any, user: str = "ada") -> list[str]:
        return await self._texts(self.engine.handle(
            Incoming(self.key(user), f"u{next(_ids)}", "button", value=value, address={"user": user}), self.deliver))

    async def advance(self, seconds: float) -> list[str]:
        """Move the clock and fire what fell due; returns what the bot sent meanwhile."""
        before = len(self.sent)
        self.clock.advance(seconds)
        await self.scheduler.fire_due()
        return [_text(reply) for reply in self.sent[before:]]

    async def _texts(self, turn: Any) -> list[str]:
        before = len(self.sent)
        await turn
        return [_text(reply) for reply in self.sent[before:]]

    def texts(self, user: str = "ada") -> list[str]:
        return [_text(reply) for reply in self.sent if reply.address.get("user") == user]


def _text(reply: Reply) -> str:
    return reply.message.text if isinstance(reply.message, Text) else repr(reply.message)
