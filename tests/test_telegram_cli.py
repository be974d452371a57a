"""`convoflow run BOT --channel telegram` as a user runs it: a separate process talking to the fake
Bot API, stopped with SIGTERM mid-conversation and started again."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest

from adapters.cli import SERVER_CHANNELS
from adapters.loader import load_bot
from adapters.telegram import SECRET_HEADER, TelegramChannel
from engine.runtime import Engine
from engine.stores import MemoryStore
from tests.fake_telegram import BOT_ID, TOKEN, FakeTelegram, message, private_chat
from tests.test_server import free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "cli-Secret_42"
KEY = f"telegram:{BOT_ID}:42/guessbot"
ANN = private_chat(42)

STORE_URLS: dict[str, Callable[[Path, pytest.FixtureRequest], str]] = {
    "sqlite": lambda tmp_path, request: f"sqlite:///{tmp_path / 'bot.db'}",
    "mongodb": lambda tmp_path, request: request.getfixturevalue("mongo_uri"),
}
"""The stores the restart tests run on (one line per backend)."""


@pytest.fixture(params=sorted(STORE_URLS))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return STORE_URLS[request.param](tmp_path, request)


@pytest.fixture
async def fake():  # type: ignore[no-untyped-def]
    api = await FakeTelegram().start()
    yield api
    await api.close()


class BotProcess:
    """`convoflow run bots/guessbot.py --channel telegram` in a child process."""

    def __init__(self, fake: FakeTelegram, store_url: str, webhook: bool) -> None:
        self.fake, self.store_url, self.webhook = fake, store_url, webhook
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "CONVOFLOW_", "MONGODB_"))}
        env.update(PYTHONPATH=str(ROOT), TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=self.fake.url, PORT=str(self.port))
        if self.webhook:
            env.update(TELEGRAM_WEBHOOK_URL="https://bot.example.org/telegram/webhook", TELEGRAM_WEBHOOK_SECRET=SECRET)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "adapters.cli", "run", "bots/guessbot.py", "--channel", "telegram",
            "--store", self.store_url, "--host", "127.0.0.1",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(1200):  # up to a minute on a busy machine
                if self.process.returncode is not None:
                    break
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz?ready=1") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"the bot did not become ready:\n{await self.output()}")

    async def post(self, update: dict[str, Any]) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{self.port}/telegram/webhook", data=json.dumps(update),
                                 headers={SECRET_HEADER: SECRET}) as response:
                return response.status

    async def say(self, update: dict[str, Any], replies: int) -> list[str | None]:
        """Send an update (webhook post, or queued for getUpdates) and wait for `replies` texts."""
        before = len(self.fake.texts(42))
        if self.webhook:
            assert await self.post(update) == 200
        else:
            self.fake.push(update)
        await self.fake.wait_for(lambda: len(self.fake.texts(42)) >= before + replies)
        return self.fake.texts(42)[before:]

    async def terminate(self) -> str:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.process.wait(), 30)
        output = await self.output()
        assert self.process.returncode == 0, output
        return output

    async def output(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        return (await self.process.stdout.read()).decode()


async def secret_of(store_url: str) -> int:
    """The number the bot drew, read as a user would: `convoflow sessions show`."""
    shown = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "sessions", "--store", store_url, "show", KEY,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.PIPE)
    out, _ = await shown.communicate()
    found = re.search(r"draw_secret: (\d+)", out.decode())
    assert found, out.decode()
    return int(found[1])


@pytest.mark.parametrize("webhook", [True, False], ids=["webhook", "polling"])
async def test_a_restarted_bot_process_resumes_the_conversation(fake: FakeTelegram, store_url: str, webhook: bool) -> None:
    first = BotProcess(fake, store_url, webhook)
    await first.start()
    registered = fake.of("setWebhook" if webhook else "deleteWebhook")
    assert registered, [c.method for c in fake.calls]
    if webhook:
        assert registered[0].params["url"] == "https://bot.example.org/telegram/webhook"
        assert registered[0].params["secret_token"] == SECRET
    assert await first.say(message(ANN, text="/start"), 2) == ["Guess a number between 1 and 10.", "Your guess?"]
    secret = await secret_of(store_url)
    wrong = secret - 1 if secret > 1 else secret + 1
    wrong_guess = message(ANN, text=str(wrong))
    assert await first.say(wrong_guess, 2) == ["Higher!" if wrong < secret else "Lower!", "Your guess?"]
    log = await first.terminate()  # mid-conversation
    assert TOKEN not in log  # the token is part of every Bot API URL: never logged

    second = BotProcess(fake, store_url, webhook)
    await second.start()
    try:
        if webhook:  # Telegram delivering the old update again changes nothing
            sent = len(fake.sent())
            assert await second.post(wrong_guess) == 200
            assert len(fake.sent()) == sent
        assert await second.say(message(ANN, text=str(secret)), 1) == [
            "You got it in 2 guesses! Send anything to play again."]
    finally:
        await second.terminate()


async def test_the_webhook_refuses_a_wrong_secret(fake: FakeTelegram, tmp_path: Path) -> None:
    bot = BotProcess(fake, "memory://", webhook=True)
    await bot.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{bot.port}/telegram/webhook", data=json.dumps(message(ANN, text="/start")),
                                 headers={SECRET_HEADER: "not-the-secret"}) as response:
                assert response.status == 403
        assert fake.sent() == []
    finally:
        await bot.terminate()


async def test_a_token_telegram_refuses_is_a_clear_error(fake: FakeTelegram) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "run", "bots/guessbot.py", "--channel", "telegram", "--store", "memory://",
        "--port", str(free_port()), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**environment, "PYTHONPATH": str(ROOT), "TELEGRAM_BOT_TOKEN": "123:revoked", "TELEGRAM_API_URL": fake.url})
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, stderr.decode()
    assert "convoflow: error: Telegram refused the bot token\n" in stderr.decode()
    assert "revoked" not in stderr.decode()  # the token is never printed
    assert "Traceback" not in stderr.decode() and "Unclosed" not in stderr.decode()


@pytest.mark.parametrize(("env", "error"), [
    ({}, "TELEGRAM_BOT_TOKEN is not set"),
    ({"TELEGRAM_BOT_TOKEN": "not a token"}, "TELEGRAM_BOT_TOKEN is malformed"),
    ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook"},
     "TELEGRAM_WEBHOOK_URL is set but TELEGRAM_WEBHOOK_SECRET is not"),
    ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/hook", "TELEGRAM_WEBHOOK_SECRET": "no spaces"},
     "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters"),
    ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": "x" * 257}, "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters"),
    ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_URL": "bot.example.org/hook", "TELEGRAM_WEBHOOK_SECRET": "abc"},
     "TELEGRAM_WEBHOOK_URL='bot.example.org/hook' is not an http(s) URL"),
    ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": "localhost:8081"}, "TELEGRAM_API_URL='localhost:8081' is not an http(s) URL"),
])
async def test_settings_are_checked_with_a_clear_error(env: dict[str, str], error: str) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "run", "bots/guessbot.py", "--channel", "telegram", "--store", "memory://",
        cwd=ROOT, env={**environment, "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert error in stderr.decode() and "Traceback" not in stderr.decode()


def test_a_bot_module_opts_into_edited_messages(tmp_path: Path) -> None:
    (tmp_path / "editbot.py").write_text(
        "from adapters.telegram_options import TelegramOptions\n"
        "from engine import dialog, get_client_response\n"
        "telegram_options = TelegramOptions(edited_messages=True)\n"
        "@dialog()\n"
        "def main():\n"
        "    yield get_client_response()\n"
    )
    bot = load_bot(str(tmp_path / "editbot.py"))
    channel = SERVER_CHANNELS["telegram"](Engine(bot.dialog, MemoryStore()), MemoryStore(), {"TELEGRAM_BOT_TOKEN": TOKEN})
    assert isinstance(channel, TelegramChannel) and channel.options.edited_messages
    (tmp_path / "dictbot.py").write_text((tmp_path / "editbot.py").read_text().replace(
        "TelegramOptions(edited_messages=True)", "{'edited_messages': True}"))
    wrong = load_bot(str(tmp_path / "dictbot.py"))
    with pytest.raises(ValueError, match="dictbot.telegram_options must be a TelegramOptions, not dict"):
        SERVER_CHANNELS["telegram"](Engine(wrong.dialog, MemoryStore()), MemoryStore(), {"TELEGRAM_BOT_TOKEN": TOKEN})
    plain = load_bot("bots/guessbot.py")
    channel = SERVER_CHANNELS["telegram"](Engine(plain.dialog, MemoryStore()), MemoryStore(), {"TELEGRAM_BOT_TOKEN": TOKEN})
    assert isinstance(channel, TelegramChannel) and not channel.options.edited_messages


@pytest.mark.parametrize(("arguments", "error"), [
    ({"token": "nope"}, "bot token is malformed"),
    ({"webhook_url": "https://bot.example.org/telegram/webhook"}, "needs a webhook secret"),
    ({"webhook_url": "https://bot.example.org/telegram/webhook", "webhook_secret": "a b"}, "webhook secret must be"),
])
def test_the_channel_checks_its_arguments_too(arguments: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TelegramChannel(Engine(load_bot("bots/guessbot.py").dialog, MemoryStore()), **{"token": TOKEN, **arguments})
