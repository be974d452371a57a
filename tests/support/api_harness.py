"""`convoflow run BOT --channel all` in this process, against the fake Telegram and Slack, with
CONVOFLOW_API_TOKEN set (or not), and a client for its webhooks and its API."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp

from convoflow.adapters.host.cli import parser, run_server
from convoflow.adapters.host.loader import load_bot
from convoflow.adapters.telegram.channel import SECRET_HEADER
from convoflow.stores import Store, open_store
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import TOKEN, FakeTelegram, message, private_chat
from tests.support.mongo_server import free_port
from tests.support.readiness import until_ready
from tests.support.slack_payloads import SIGNING_SECRET, dm, event_callback, signed_headers

API_TOKEN = "test-api-token-0123456789"
WEBHOOK_SECRET = "api-webhook_Secret"
OUTREACH = "tests/support/outreach.py"


def settings_for(telegram: FakeTelegram, slack: FakeSlack, api_token: str | None = API_TOKEN) -> dict[str, str]:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook", "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SLACK_BOT_TOKEN": slack.teams[0].bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url, "CONVOFLOW_WEB_SECRET": "api-web-secret-0123456789",
    }
    if api_token is not None:
        env["CONVOFLOW_API_TOKEN"] = api_token
    return env


@dataclass
class Served:
    url: str
    store: Store
    """The server's store, opened read-only beside it."""
    telegram: FakeTelegram
    slack: FakeSlack
    http: aiohttp.ClientSession

    async def call(self, path: str, body: Any = None, *, raw: bytes | None = None,
                   token: str | None = API_TOKEN, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST to the API; the status and the answer (JSON when it is)."""
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else json.dumps(body).encode()
        async with self.http.post(self.url + path, data=data, headers=sent) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def telegram_says(self, chat: int, text: str) -> None:
        update = message(private_chat(chat), text=text)
        async with self.http.post(self.url + "/telegram/webhook", data=json.dumps(update),
                                  headers={SECRET_HEADER: WEBHOOK_SECRET}) as response:
            assert response.status == 200, await response.text()

    async def slack_says(self, channel: str, user: str, text: str) -> None:
        body = json.dumps(event_callback(dm(text, channel=channel, user=user)))
        async with self.http.post(self.url + "/slack/events", data=body, headers=signed_headers(body)) as response:
            assert response.status == 200, await response.text()

    async def settled(self) -> dict[str, str]:
        """The snapshot once every reply is marked delivered and nothing changes any more."""
        previous = await self.snapshot()
        for _ in range(200):
            await asyncio.sleep(0.05)
            now = await self.snapshot()
            sessions = await self.store.list_sessions(limit=1_000_000)
            if now == previous and not any(s.outbox for s in sessions):
                return now
            previous = now
        raise AssertionError("the sessions did not settle")

    async def snapshot(self) -> dict[str, str]:
        """Every session as stored, all of it."""
        sessions = await self.store.list_sessions(limit=1_000_000)
        return {str(s.key): json.dumps(s.to_record(), sort_keys=True, default=str) for s in sessions}


@asynccontextmanager
async def serving(tmp_path: Path, bot: str = OUTREACH, api_token: str | None = API_TOKEN) -> AsyncIterator[Served]:
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    telegram, slack = await FakeTelegram().start(), await FakeSlack().start()
    port = free_port()
    args = parser().parse_args(["run", bot, "--channel", "all", "--store", store_url,
                                "--host", "127.0.0.1", "--port", str(port)])
    stop = asyncio.Event()
    server = asyncio.create_task(run_server(args, settings_for(telegram, slack, api_token), load_bot(bot), stop))
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, url, server)
            store = open_store(store_url, read_only=True)
            try:
                yield Served(url, store, telegram, slack, http)
            finally:
                await store.close()
    finally:
        stop.set()
        await asyncio.wait_for(server, 30)
        await telegram.close()
        await slack.close()


async def wait_ready(http: aiohttp.ClientSession, url: str, server: asyncio.Task[None]) -> None:
    """Until the server in `server` is ready; its own error if it failed first."""
    def gone() -> str | None:
        if server.done():
            server.result()  # raises what the server raised
            return "the server stopped before it was ready"
        return None

    await until_ready(http, url, gone, seconds=90.0)
