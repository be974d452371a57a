"""The web channel on a real aiohttp server (the host's own app), with a client that talks to it
as the page does."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from convoflow.adapters.host.app import make_app
from convoflow.adapters.host.loader import load_bot
from convoflow.adapters.web.channel import WebChannel, WebOptions
from convoflow.clock import Clock, SystemClock
from convoflow.stores import Store
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from tests.support.mongo_server import free_port

SECRET = "web-test-secret-0123456789"
GUESSBOT = "tests/support/web_guessbot.py"


@dataclass
class WebBot:
    url: str
    channel: WebChannel
    engine: Engine
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """The status, the answer (JSON when it is) and the headers."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json", **(headers or {})}
        async with self.http.request(method, self.url + path, data=data, headers=sent) as response:
            text = await response.text()
            try:
                answer: Any = json.loads(text)
            except ValueError:
                answer = text
            return response.status, answer, dict(response.headers)

    async def token(self, body: dict[str, Any] | None = None) -> str:
        status, answer, _ = await self.call("POST", "/web/session", body or {})
        assert status == 200, answer
        return str(answer["token"])

    async def say(self, token: str, text: str | None = None, button: str | None = None,
                  message_id: str | None = None) -> list[dict[str, Any]]:
        """Post a message; the replies of its turn."""
        body: dict[str, Any] = {"token": token, "id": message_id or uuid.uuid4().hex}
        body.update({"text": text} if button is None else {"button": button})
        status, answer, _ = await self.call("POST", "/web/messages", body)
        assert status == 200, (status, answer)
        return list(answer["replies"])

    async def history(self, token: str) -> list[dict[str, Any]]:
        status, answer, _ = await self.call("GET", f"/web/history?token={token}")
        assert status == 200, answer
        return list(answer["replies"])


@dataclass
class Stream:
    """An open `GET /web/stream`, read as a browser's EventSource reads it."""

    response: aiohttp.ClientResponse
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def read(self) -> None:
        event: dict[str, Any] = {}
        async for raw in self.response.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in event:
                    self.events.put_nowait({"id": event.get("id"), "event": event.get("event"),
                                            "reply": json.loads(event["data"])})
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                event[name] = value


@asynccontextmanager
async def open_stream(bot: WebBot, token: str, headers: dict[str, str] | None = None,
                      after: int | None = None) -> AsyncIterator[Stream]:
    query = f"?token={token}" + ("" if after is None else f"&after={after}")
    async with bot.http.get(bot.url + "/web/stream" + query, headers=headers or {}) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        stream = Stream(response)
        reading = asyncio.create_task(stream.read())
        try:
            yield stream
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)


@asynccontextmanager
async def web_bot(store: Store, options: WebOptions = WebOptions(poll_seconds=0.05), bot: str = GUESSBOT,
                  clock: Clock = SystemClock()) -> AsyncIterator[WebBot]:
    """The bot `bot` served on the web channel over `store`, on a loopback port."""
    loaded = load_bot(bot)
    engine = Engine(loaded.dialog, store, loaded.fallback, app=loaded.app, clock=clock)
    channel = WebChannel(TurnRunner(engine), store, SECRET, options)
    runner = web.AppRunner(make_app([channel], CollectorRegistry()), shutdown_timeout=5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await channel.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield WebBot(f"http://127.0.0.1:{port}", channel, engine, http)
    finally:
        await runner.cleanup()
        await channel.stop()
        await channel.runner.drain()
