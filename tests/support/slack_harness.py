"""A SlackChannel served on the shared aiohttp server, next to a fake Slack, with a client that
sends what Slack sends (signed events and clicks)."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web

from convoflow.adapters.host.loader import load_bot
from convoflow.adapters.host.app import make_app
from convoflow.adapters.slack.channel import SlackChannel
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from convoflow.stores import Store
from tests.support.fake_slack import Call, FakeSlack
from tests.support.slack_payloads import SIGNING_SECRET, block_actions, event_callback, form_body, signed_headers


def bot_engine(spec: str, store: Store, outcomes: list[str] | None = None) -> Engine:
    """The Engine `convoflow run SPEC` would make; `outcomes` collects every turn's outcome."""
    bot = load_bot(spec)
    on_turn = None if outcomes is None else (lambda turn: outcomes.append(turn.outcome))
    return bot.engine(store, on_turn=on_turn)


@dataclass
class Reply:
    status: int
    text: str
    seconds: float


@dataclass
class SlackApp:
    fake: FakeSlack
    channel: SlackChannel
    base_url: str
    http: aiohttp.ClientSession

    async def post(self, body: str, headers: dict[str, str], path: str = "/slack/events") -> Reply:
        started = time.perf_counter()
        async with self.http.post(self.base_url + path, data=body.encode(), headers=headers) as response:
            text = await response.text()
        return Reply(response.status, text, time.perf_counter() - started)

    async def send(self, event: dict[str, Any], *, team: str = "T111", enterprise: str | None = None,
                   event_id: str | None = None, retry: int | None = None) -> Reply:
        """Deliver an event as the Events API does (signed JSON)."""
        body = json.dumps(event_callback(event, team=team, enterprise=enterprise, event_id=event_id))
        return await self.post(body, signed_headers(body, retry=retry))

    async def click(self, posted: Call, index: int, **options: Any) -> Reply:
        """Click button `index` of a message the app posted (signed form-encoded payload)."""
        body = form_body(block_actions(posted, index, **options))
        return await self.post(body, signed_headers(body, content_type="application/x-www-form-urlencoded"))


@asynccontextmanager
async def running_slack(engine: Engine, fake: FakeSlack, *, ack_seconds: float = 2.0, drain_seconds: float = 20.0,
                        **options: Any) -> AsyncIterator[SlackApp]:
    """The channel on a free loopback port, its turns run by a TurnRunner with these deadlines;
    shut down as `serve()` does (server first, then the channel, which finishes its turns)."""
    runner = TurnRunner(engine, ack_seconds=ack_seconds, drain_seconds=drain_seconds, retry_delays=(0.5, 2.0, 5.0))
    if "oauth" not in options:
        options.setdefault("bot_token", fake.teams[0].bot_token)
    if "app_token" not in options:
        options.setdefault("signing_secret", SIGNING_SECRET)
    channel = SlackChannel(runner, api_url=fake.api_url, **options)
    runner = web.AppRunner(make_app([channel]))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await channel.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield SlackApp(fake, channel, f"http://127.0.0.1:{port}", http)
    finally:
        await runner.cleanup()
        await channel.stop()


async def play_guessbot(guess: Any, inbox: Any) -> int:
    """Find the secret by bisection. `guess(n)` sends a guess; `inbox(count)` returns the texts of
    the next `count` replies. Returns the number of guesses."""
    low, high, guesses = 1, 10, 0
    while True:
        n = (low + high) // 2
        await guess(str(n))
        guesses += 1
        [first] = await inbox(1)
        if first.startswith("You got it"):
            assert first.startswith(f"You got it in {guesses} "), first
            return guesses
        assert first in ("Higher!", "Lower!"), first
        assert await inbox(1) == ["Your guess?"]
        if first == "Higher!":
            low = n + 1
        else:
            high = n - 1
        assert low <= high, "the secret changed mid-game"
