"""A Telegram bot under test: the real TelegramChannel (and python-telegram-bot) behind the real
HTTP app, talking to the fake Bot API, with helpers to post updates and play the example bots.

The webhook answers once a turn has committed, and its replies go out after; `post` then waits
until the bot has finished what it was doing (delivery included) unless told not to, so a test
reads the fake's calls as a user would once the bot has answered."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp.test_utils import TestServer

from convoflow.adapters.host.loader import load_bot
from convoflow.adapters.host.app import make_app
from convoflow.adapters.telegram.channel import SECRET_HEADER, WEBHOOK_PATH, TelegramChannel, TelegramOptions
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from convoflow.stores import MemoryStore, Store
from tests.support.fake_telegram import TOKEN, FakeTelegram

SECRET = "s3cret_Webhook-token"
FAST = TelegramOptions(backoff_seconds=0.01, poll_timeout=1)
"""Test options: quick backoff and short long-polls (the retry logic is the same)."""
QUICK_RETRIES = (0.01, 0.02, 0.04)
"""The turn runner's retries, shortened likewise."""


@dataclass
class Bot:
    """A running bot: `post` sends a webhook update, `fake` is the Bot API it talks to."""

    fake: FakeTelegram
    runner: TurnRunner
    channel: TelegramChannel
    server: TestServer | None = None
    http: aiohttp.ClientSession = field(default_factory=aiohttp.ClientSession)

    @property
    def engine(self) -> Engine:
        return self.runner.engine

    @property
    def store(self) -> Store:
        return self.engine.store

    async def post(self, update: Any, secret: str | None = SECRET, raw: bytes | None = None, settle: bool = True) -> int:
        """Post an update as Telegram does; returns the status answered. With `settle`, returns once
        the bot has also finished the work the update started (its replies are out)."""
        assert self.server is not None, "a polling bot has no webhook"
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        body = raw if raw is not None else json.dumps(update).encode()
        async with self.http.post(self.server.make_url(WEBHOOK_PATH), data=body, headers=headers) as response:
            await response.read()
        if settle:
            await self.runner.drain()
        return response.status

    async def close(self) -> None:
        await self.http.close()
        if self.server is not None:
            await self.server.close()
        await self.channel.stop()
        await self.store.close()
        await self.fake.close()


async def start_bot(
    dialog: Callable[..., Any] | str,
    *,
    store: Store | None = None,
    webhook: bool = True,
    options: TelegramOptions = FAST,
    app: str | None = None,
    retry_delays: tuple[float, ...] = QUICK_RETRIES,
    **engine_options: Any,
) -> Bot:
    """The bot (a dialog, or a bot spec such as "bots/guessbot.py") running in webhook or polling
    mode; `engine_options` go to its Engine (a clock, say)."""
    if isinstance(dialog, str):
        loaded = load_bot(dialog)
        dialog, app = loaded.dialog, app or loaded.app
        engine_options.setdefault("interrupts", loaded.interrupts)
    fake = await FakeTelegram().start()
    runner = TurnRunner(Engine(dialog, store or MemoryStore(), app=app, **engine_options), retry_delays=retry_delays)
    channel = TelegramChannel(
        runner, TOKEN, webhook_secret=SECRET if webhook else None,
        webhook_url="https://bot.example.org/telegram/webhook" if webhook else None,
        api_url=fake.url, options=options,
    )
    bot = Bot(fake, runner, channel)
    if webhook:
        bot.server = TestServer(make_app([channel]), host="127.0.0.1")
        await bot.server.start_server()
    await channel.start()
    return bot


async def binary_search(say: Callable[[str], Awaitable[str]]) -> int:
    """Play one guessbot game by halving the range; returns the number of guesses."""
    low, high, guesses = 1, 10, 0
    while True:
        guess = (low + high) // 2
        guesses += 1
        answer = await say(str(guess))
        if answer.startswith("You got it"):
            return guesses
        if answer == "Higher!":
            low = guess + 1
        elif answer == "Lower!":
            high = guess - 1
        else:
            raise AssertionError(f"unexpected answer {answer!r} to guess {guess}")
        assert low <= high, "the secret changed mid-game"
