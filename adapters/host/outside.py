"""`convoflow signal` and `convoflow start`: one outside event, one conversation the bot starts,
from the command line, on the store the bot serves from. Replies go out through the channel the
session's address names when its credentials are in the environment (as `convoflow run` reads
them); without them they wait in the outbox, and the serving process delivers them."""

from __future__ import annotations

import json
import sys
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Mapping, Sequence

from convoflow.adapters.channel import Channel, router
from convoflow.adapters.host.loader import Bot
from convoflow.adapters.host.serve import routed
from convoflow.adapters.host.starts import Starter
from convoflow.messages import SessionKey
from convoflow.stores.base import Store
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from convoflow.types import JSON
from convoflow.wakeups import IfRunning

ChannelsFor = Callable[[TurnRunner, Sequence[str]], Sequence[Channel]]
"""Builds the named channels from the environment (raises the CLI's ConfigError)."""

START_EXIT = {"started": 0, "replaced": 0, "queued": 0, "skipped": 0, "duplicate": 0, "blocked": 1, "failed": 1}
SIGNAL_EXIT = {"delivered": 0, "kept": 0, "duplicate": 0, "unknown": 1, "failed": 1}


def engine_of(bot: Bot, store: Store) -> Engine:
    return Engine(bot.dialog, store, bot.fallback, app=bot.app, idle_timeout=bot.idle_timeout, on_idle=bot.on_idle)


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


def json_option(option: str, text: str | None) -> JSON:
    """The JSON text of `option` (--data, --args); absent: null."""
    if text is None:
        return None
    try:
        data: JSON = json.loads(text, parse_constant=_no_constant)
    except ValueError as error:
        raise ValueError(f"{option} is not JSON: {error}") from None
    return data


def _no_constant(name: str) -> JSON:
    raise ValueError(f"{name} is not JSON")


async def signal_command(key: SessionKey, name: str, data: JSON, event_id: str, bot: Bot, store: Store,
                         channels_for: ChannelsFor, env: Mapping[str, str]) -> int:
    """Deliver the event; prints what happened (`delivered telegram:7:42/checkout`)."""
    engine = engine_of(bot, store)
    runner = TurnRunner(engine)
    wanted = key.partition.partition(":")[0]
    channels = channels_for(runner, [wanted]) if _configured(wanted, env) else []
    async with connected(channels) as ready:
        outcome = await engine.signal(key, name, data, event_id, deliver=routed(router(ready)))
    print(f"{outcome.status} {key}")
    if not channels and outcome.replies:
        print(f"convoflow: no {wanted} credentials here: the replies wait for the serving process", file=sys.stderr)
    return SIGNAL_EXIT[outcome.status]


async def start_command(to: str, dialog: str | None, args: list[JSON], start_id: str, if_running: IfRunning,
                        bot: Bot, store: Store, channels_for: ChannelsFor) -> int:
    """Start the conversation; prints what happened (`started slack:-:T1:D2/promo`)."""
    engine = engine_of(bot, store)
    channels = channels_for(TurnRunner(engine), [to.partition(":")[0]])
    async with connected(channels) as ready:
        starter = Starter(engine, ready, bot.dialogs)
        started = await starter.start(to, starter.dialog(dialog, args), start_id, if_running)
    print(f"{started.status} {started.key}")
    return START_EXIT[started.status]


def _configured(channel: str, env: Mapping[str, str]) -> bool:
    """Whether the environment holds credentials of `channel` (else nothing is built for it)."""
    prefix = {"telegram": "TELEGRAM_BOT_TOKEN", "slack": ("SLACK_BOT_TOKEN", "SLACK_CLIENT_ID")}.get(channel)
    if prefix is None:
        return False
    names = (prefix,) if isinstance(prefix, str) else prefix
    return any(env.get(name, "").strip() for name in names)
