"""`convoflow run BOT --channel ...` as an operator sees it: its log lines, its start-up checks of
the settings, and its readiness, all through the real command in a child process."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from convoflow.adapters.host.logs import MASK
from convoflow.adapters.telegram.channel import SECRET_HEADER
from tests.support.convoflow_process import ConvoflowProcess, convoflow_command
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import BOT_ID, TOKEN, FakeTelegram, message, private_chat
from tests.support.mongo_server import free_port, start_mongo_server
from tests.support.slack_payloads import SIGNING_SECRET, dm, event_callback, signed_headers
from tests.test_channel_all import WEBHOOK_SECRET, all_channel_settings

SECRETS = (TOKEN, TOKEN.partition(":")[2], WEBHOOK_SECRET, SIGNING_SECRET, "xoxb-fake-T111")
"""Every secret the process is given, and the key part of the Telegram token on its own."""


@dataclass(frozen=True)
class Turn:
    session: str
    channel: str
    outcome: str
    duration_ms: float


def turn_lines(log: str, fmt: str) -> list[Turn]:
    """The per-turn lines of a log, read the way a log collector would."""
    if fmt == "json":
        records = [json.loads(line) for line in log.splitlines()]  # every line is one JSON object
        return [Turn(r["session"], r["channel"], r["outcome"], r["duration_ms"]) for r in records if "outcome" in r]
    found = re.findall(r" convoflow\.engine: turn (\S+) channel=(\w+) outcome=(\w+) .*duration=([\d.]+)ms$", log, re.M)
    return [Turn(session, channel, outcome, float(ms)) for session, channel, outcome, ms in found]


@pytest.mark.parametrize(("fmt", "how"), [("text", []), ("json", ["--log-format", "json"]), ("json", "env")],
                         ids=["text", "json-flag", "json-env"])
async def test_one_log_line_per_turn_and_no_secret_in_any_line(
    telegram: FakeTelegram, slack: FakeSlack, tmp_path: Path, fmt: str, how: list[str] | str
) -> None:
    settings = all_channel_settings(telegram, slack)
    if how == "env":
        settings["CONVOFLOW_LOG_FORMAT"] = "json"
    bot = ConvoflowProcess(tmp_path / "bot.log", "bots/guessbot.py", "--channel", "all", "--store", "memory://",
                           "--log-level", "DEBUG", *(how if isinstance(how, list) else []), settings=settings)
    try:
        await bot.start()
        async with aiohttp.ClientSession() as http:
            async def on_telegram(update: dict[str, Any]) -> None:
                async with http.post(f"{bot.url}/telegram/webhook", data=json.dumps(update),
                                     headers={SECRET_HEADER: WEBHOOK_SECRET}) as response:
                    assert response.status == 200

            async def on_slack(text: str) -> None:
                body = json.dumps(event_callback(dm(text)))
                async with http.post(f"{bot.url}/slack/events", data=body, headers=signed_headers(body)) as response:
                    assert response.status == 200

            start = message(private_chat(42), text="/start")
            await on_telegram(start)
            await on_telegram(message(private_chat(42), text="many"))
            await on_telegram(start)  # Telegram delivering it again
            await on_slack("hi")
            await slack.wait_for_posts(2)
        assert await bot.stop() == 0
    finally:
        await bot.kill()
    log = bot.log()

    telegram_key, slack_key = f"telegram:{BOT_ID}:42/guessbot", "slack:-:T111:D111/guessbot"
    turns = turn_lines(log, fmt)
    assert [(t.session, t.channel, t.outcome) for t in turns if t.channel == "telegram"] == [
        (telegram_key, "telegram", "ok"), (telegram_key, "telegram", "ok"), (telegram_key, "telegram", "duplicate")]
    assert [(t.session, t.channel, t.outcome) for t in turns if t.channel == "slack"] == [(slack_key, "slack", "ok")]
    assert all(t.duration_ms >= 0 for t in turns)
    # Libraries log at DEBUG what they send, the Bot API URL with the token in it included: masked.
    assert f"/bot{MASK}" in log
    for secret in SECRETS:
        assert secret not in log
    assert "Traceback" not in log


@pytest.mark.parametrize(("settings", "named"), [
    ({"PORT": "http"}, "PORT='http' is not a port number (1-65535)"),
    ({"PORT": "70000"}, "PORT='70000' is not a port number (1-65535)"),
    ({"CONVOFLOW_LOG_FORMAT": "xml"}, "CONVOFLOW_LOG_FORMAT='xml' must be text or json"),
    ({"CONVOFLOW_STORE": "postgres://bot:pa55word@db/sessions"},
     "CONVOFLOW_STORE: unknown store scheme 'postgres' in 'postgres://***@db/sessions'"),
    ({"MONGODB_URI": "mongodb://bot:pa55word@db:27O17/sessions"}, "MONGODB_URI: invalid MongoDB store URL: Port"),
    ({"MONGODB_URI": "mongodb://db/sessions?ttlSeconds=week"}, "MONGODB_URI: ttlSeconds in the MongoDB store URL must be a number"),
    ({"CONVOFLOW_STORE": "sessions.db"}, "CONVOFLOW_STORE: store URL 'sessions.db' has no scheme"),
])
async def test_a_malformed_setting_stops_the_start_with_its_name(
    telegram: FakeTelegram, slack: FakeSlack, settings: dict[str, str], named: str
) -> None:
    code, out, error = await convoflow_command("run", "bots/guessbot.py", "--channel", "all",
                                               **all_channel_settings(telegram, slack), **settings)
    assert code == 2, error
    assert f"convoflow: error: {named}" in error
    assert "Traceback" not in error and "pa55word" not in error
    assert telegram.calls == [] and slack.calls == []  # stopped before talking to any platform


class SlowStartTelegram(FakeTelegram):
    """A Bot API that answers getMe only when told to: the channel's start-up takes that long."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.answer_get_me = asyncio.Event()

    async def _api_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        await self.answer_get_me.wait()
        return await super()._api_getMe(params)


async def ready(http: aiohttp.ClientSession, bot: ConvoflowProcess) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{bot.url}/healthz?ready=1") as response:
        return response.status, await response.json()


async def readiness_once_started(http: aiohttp.ClientSession, bot: ConvoflowProcess) -> tuple[int, dict[str, Any]]:
    """The readiness answer once the channels have started (they may take a while on a busy machine)."""
    for _ in range(600):
        status, body = await ready(http, bot)
        if body.get("reason") != "channels not started":
            return status, body
        await asyncio.sleep(0.05)
    raise AssertionError(f"the channels never started:\n{bot.log()}")


async def wait_until_live(http: aiohttp.ClientSession, bot: ConvoflowProcess) -> None:
    for _ in range(1800):
        try:
            async with http.get(f"{bot.url}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"never live:\n{bot.log()}")


async def test_readiness_waits_for_the_channels_to_start(slack: FakeSlack, tmp_path: Path) -> None:
    telegram = await SlowStartTelegram().start()
    bot = ConvoflowProcess(tmp_path / "bot.log", "bots/guessbot.py", "--channel", "all", "--store", "memory://",
                           settings=all_channel_settings(telegram, slack))
    try:
        await bot.launch()
        async with aiohttp.ClientSession() as http:
            await wait_until_live(http, bot)  # live (the process serves) ...
            await telegram.wait_for(lambda: telegram.of("getMe"))
            assert await ready(http, bot) == (503, {"status": "unavailable", "reason": "channels not started",
                                                    "channels": ["telegram", "slack", "web"]})  # ... but not ready
            telegram.answer_get_me.set()
            assert (await bot.wait_ready())["status"] == "ok"
        assert await bot.stop() == 0
    finally:
        await bot.kill()
        await telegram.close()


async def test_readiness_follows_the_store(telegram: FakeTelegram, tmp_path: Path) -> None:
    port = free_port()
    uri = f"mongodb://127.0.0.1:{port}/ready?retryWrites=false&directConnection=true&heartbeatFrequencyMS=500&serverSelectionTimeoutMS=1000"
    bot = ConvoflowProcess(tmp_path / "bot.log", "bots/guessbot.py", "--channel", "telegram",
                           settings={"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": telegram.url, "MONGODB_URI": uri,
                                     "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook",
                                     "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET})
    server = None
    try:
        await bot.launch()
        async with aiohttp.ClientSession() as http:
            await wait_until_live(http, bot)
            status, body = await readiness_once_started(http, bot)
            assert (status, body["reason"].split(":")[0]) == (503, "store unreachable")  # no MongoDB yet
            server = await asyncio.to_thread(start_mongo_server, port)
            assert (await bot.wait_ready())["status"] == "ok"
            await asyncio.to_thread(server.stop)
            status, body = await ready(http, bot)
            assert (status, body["reason"].split(":")[0]) == (503, "store unreachable")
            async with http.get(f"{bot.url}/healthz") as live:
                assert live.status == 200  # alive all the same: no restart would help
        bot.signal(signal.SIGTERM)
        assert await bot.wait() == 0
    finally:
        await bot.kill()
        if server is not None:
            await asyncio.to_thread(server.stop)


@pytest.mark.parametrize("then", ["turn finishes", "second signal"])
async def test_sigterm_finishes_the_turn_in_flight_and_a_second_one_exits_at_once(
    telegram: FakeTelegram, tmp_path: Path, then: str
) -> None:
    bot = ConvoflowProcess(tmp_path / "bot.log", "bots/guessbot.py", "--channel", "telegram",
                           "--store", f"sqlite:///{tmp_path / 'bot.db'}",
                           settings={"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": telegram.url,
                                     "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook",
                                     "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET})
    try:
        await bot.start()
        telegram.hold(42)  # the bot's replies to this chat wait at the Bot API
        async with aiohttp.ClientSession() as http:
            async def post() -> int:
                async with http.post(f"{bot.url}/telegram/webhook", data=json.dumps(message(private_chat(42), text="/start")),
                                     headers={SECRET_HEADER: WEBHOOK_SECRET}) as response:
                    return response.status

            assert await post() == 200  # answered once committed ...
            await telegram.wait_for(lambda: telegram.of("sendMessage"))  # ... while the turn is delivering
            bot.signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert bot.process is not None and bot.process.returncode is None  # finishing the turn
            with pytest.raises(aiohttp.ClientConnectionError):  # no new updates: Telegram retries elsewhere
                await post()
            if then == "turn finishes":
                telegram.release(42)
                assert await bot.wait() == 0
                assert telegram.texts(42) == ["Guess a number between 1 and 10.", "Your guess?"]
            else:
                bot.signal(signal.SIGTERM)
                assert await bot.wait(timeout=5) == 1
                assert "second signal: exiting now" in bot.log()
                # Nothing is lost: the replies wait in the outbox for the next process's sweep.
                _, shown, _ = await convoflow_command("sessions", "--store", f"sqlite:///{tmp_path / 'bot.db'}",
                                                      "show", f"telegram:{BOT_ID}:42/guessbot")
                assert "outbox    2 undelivered" in shown, shown
    finally:
        await bot.kill()
