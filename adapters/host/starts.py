"""Conversations the bot starts, from outside: a dialog chosen by name among the bot module's
@dialog functions, an address opened through its channel (convoflow.adapters.channel), and one
`Engine.start` whose replies go out through that channel's own sending (its flood limits and
retries). Shared by `POST /conversations`, `convoflow start` and `convoflow broadcast`."""

from __future__ import annotations

import inspect
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Literal, Mapping, Sequence

from convoflow.adapters.channel import Channel, channel_for, routed
from convoflow.adapters.host.loader import Bot
from convoflow.delivery import Undeliverable
from convoflow.dialogs import BaseDialog
from convoflow.messages import Reply, SessionKey
from convoflow.stores.base import Store
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from convoflow.types import JSON
from convoflow.wakeups import IfRunning

IF_RUNNING: tuple[IfRunning, ...] = ("skip", "replace", "queue")

StartStatus = Literal["started", "replaced", "queued", "skipped", "duplicate", "failed", "blocked"]
"""What a start did: Engine.start's outcome, or "blocked" when it committed but the channel
refused its message for good (a Telegram user who blocked the bot, a chat that is gone)."""

ChannelsFor = Callable[[TurnRunner, Sequence[str]], Sequence[Channel]]
"""Builds the named channels from the environment (raises the CLI's ConfigError)."""

CONCURRENCY = 4
"""Starts a broadcast has under way at once (the channels' flood limits pace them further)."""


class FieldError(ValueError):
    """A request's field is missing or malformed: `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Started:
    key: SessionKey
    status: StartStatus


@dataclass(frozen=True)
class Starter:
    engine: Engine
    channels: Sequence[Channel]
    dialogs: Mapping[str, Callable[..., BaseDialog[Any]]]
    """The bot module's @dialog functions by name."""

    def dialog(self, name: str | None, args: Sequence[JSON] = ()) -> BaseDialog[Any] | None:
        """The call of the dialog `name` with `args` (None with no name: the bot's own dialog).
        Raises FieldError naming `dialog` or `args`."""
        if name is None:
            if args:
                raise FieldError("args", "arguments need a dialog to go to (give `dialog`)")
            return None
        found = self.dialogs.get(name)
        if found is None:
            known = ", ".join(self.dialogs) or "none"
            raise FieldError("dialog", f"the bot has no dialog named {name!r} (its dialogs: {known})")
        try:
            inspect.signature(found).bind(*args)
        except TypeError as error:
            raise FieldError("args", f"do not fit {name}{inspect.signature(found)}: {error}") from None
        return found(*args)

    async def start(self, to: str, dialog: BaseDialog[Any] | None, start_id: str | Callable[[SessionKey], str],
                    if_running: IfRunning = "skip") -> Started:
        """Open `to` and start `dialog` there (`start_id`, or the id it makes of the session key),
        its replies sent at once. Raises BadAddress (the address), ValueError (the start id, the
        dialog's arguments: not stored), StoreError or the channel's error opening the address
        (nothing started: try again)."""
        key, address = await channel_for(self.channels, to).open(to)
        return await self.start_at(key, address, dialog, start_id if isinstance(start_id, str) else start_id(key),
                                   if_running)

    async def start_at(self, key: SessionKey, address: dict[str, JSON], dialog: BaseDialog[Any] | None,
                       start_id: str, if_running: IfRunning = "skip") -> Started:
        """Start `dialog` for the session `key`, its replies sent to `address` at once."""
        send = routed(self.channels)
        refused: list[Undeliverable] = []

        async def deliver(reply: Reply) -> None:
            try:
                await send(reply)
            except Undeliverable as error:
                refused.append(error)
                raise

        outcome = await self.engine.start(key, dialog, address, start_id, if_running, deliver=deliver)
        return Started(key, "blocked" if refused and outcome.status != "failed" else outcome.status)


def engine_of(bot: Bot, store: Store) -> Engine:
    return bot.engine(store)


@asynccontextmanager
async def connected(channels: Sequence[Channel]) -> AsyncIterator[Sequence[Channel]]:
    """The channels ready to open addresses and send, without taking updates; stopped after."""
    ready: list[Channel] = []
    try:
        for channel in channels:
            await channel.connect()
            ready.append(channel)
        yield ready
    finally:
        for channel in reversed(ready):
            await channel.stop()
