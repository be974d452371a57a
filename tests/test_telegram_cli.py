"""`convoflow run BOT --channel telegram` as a user runs it: a separate process talking to the fake
Bot API, stopped with SIGTERM mid-conversation and started again."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest

from convoflow.adapters.host.cli import SERVER_CHANNELS
from convoflow.adapters.host.loader import load_bot
from convoflow.adapters.telegram.channel import SECRET_HEADER, TelegramChannel
from convoflow.stores import MemoryStore, Store
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from tests.support.fake_telegram import BOT_ID, TOKEN, FakeTelegram, message, private_chat
from tests.support.convoflow_process import ConvoflowProcess, convoflow_command
from tests.support.mongo_server import free_port

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


class BotProcess:
    """`convoflow run bots/guessbot.py --channel telegram` in a child process."""

    def __init__(self, fake: FakeTelegram, store_url: str, webhook: bool, log_path: Path) -> None:
        self.fake, self.webhook = fake, webhook
        settings = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.url}
        if webhook:
            settings.update(TELEGRAM_WEBHOOK_URL="https://bot.example.org/telegram/webhook", TELEGRAM_WEBHOOK_SECRET=SECRET)
        self.process = ConvoflowProcess(log_path, "bots/guessbot.py", "--channel", "telegram", "--store", store_url,
                                        settings=settings)

    async def start(self) -> None:
        await self.process.start()

    async def post(self, update: dict[str, Any]) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.process.url}/telegram/webhook", data=json.dumps(update),
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
        code = await self.process.stop(30)
        output = self.process.log()
        assert code == 0, output
        return output

async def secret_of(store_url: str) -> int:
    """The number the bot drew, read as a user would: `convoflow sessions show`."""
    _, out, _ = await convoflow_command("sessions", "--store", store_url, "show", KEY)
    found = re.search(r"draw_secret: (\d+)", out)
    assert found, out
    return int(found[1])


@pytest.mark.parametrize("webhook", [True, False], ids=["webhook", "polling"])
async def test_a_restarted_bot_process_resumes_the_conversation(
    telegram: FakeTelegram, store_url: str, webhook: bool, tmp_path: Path
) -> None:
    first = BotProcess(telegram, store_url, webhook, tmp_path / "first.log")
    await first.start()
    registered = telegram.of("setWebhook" if webhook else "deleteWebhook")
    assert registered, [c.method for c in telegram.calls]
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

    second = BotProcess(telegram, store_url, webhook, tmp_path / "second.log")
    await second.start()
    try:
        if webhook:  # Telegram delivering the old update again changes nothing
            sent = len(telegram.sent())
            assert await second.post(wrong_guess) == 200
            assert len(telegram.sent()) == sent
        assert await second.say(message(ANN, text=str(secret)), 1) == [
            "You got it in 2 guesses! Send anything to play again."]
    finally:
        await second.terminate()


async def test_the_webhook_refuses_a_wrong_secret(telegram: FakeTelegram, tmp_path: Path) -> None:
    bot = BotProcess(telegram, "memory://", True, tmp_path / "bot.log")
    await bot.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{bot.process.url}/telegram/webhook", data=json.dumps(message(ANN, text="/start")),
                                 headers={SECRET_HEADER: "not-the-secret"}) as response:
                assert response.status == 403
        assert telegram.sent() == []
    finally:
        await bot.terminate()


async def test_a_token_telegram_refuses_is_a_clear_error(telegram: FakeTelegram) -> None:
    code, _, stderr = await convoflow_command(
        "run", "bots/guessbot.py", "--channel", "telegram", "--store", "memory://", "--port", str(free_port()),
        TELEGRAM_BOT_TOKEN="123:revoked", TELEGRAM_API_URL=telegram.url)
    assert code == 2, stderr
    assert "convoflow: error: Telegram refused the bot token\n" in stderr
    assert "revoked" not in stderr  # the token is never printed
    assert "Traceback" not in stderr and "Unclosed" not in stderr

def last_line(stderr: str) -> str:
    return stderr.rstrip("\n").rpartition("\n")[2]


async def test_an_unreachable_bot_api_is_one_line_naming_the_setting() -> None:
    api = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, _, stderr = await convoflow_command("run", "guessbot", "--channel", "telegram", "--store", "memory://",
                                              "--port", str(free_port()), TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=api)
    assert code == 2
    line = last_line(stderr)
    assert line.startswith(f"convoflow: error: cannot reach the Telegram Bot API at {api}: ")
    assert line.endswith("(TELEGRAM_API_URL)")
    assert "Traceback" not in stderr and "Unclosed" not in stderr and TOKEN not in stderr


async def test_a_webhook_url_telegram_refuses_is_one_line_naming_the_setting(telegram: FakeTelegram) -> None:
    telegram.fail("setWebhook", 400, times=None, description="Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
    args = ("run", "guessbot", "--channel", "telegram", "--store", "memory://", "--port", str(free_port()))
    settings = dict(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=telegram.url, TELEGRAM_WEBHOOK_SECRET=SECRET,
                    TELEGRAM_WEBHOOK_URL="http://bot.example.org/telegram/webhook")
    code, _, stderr = await convoflow_command(*args, **settings)
    assert code == 2
    assert last_line(stderr) == (
        "convoflow: error: Telegram refused the webhook URL http://bot.example.org/telegram/webhook: "
        "Bad webhook: an https url must be provided for webhook (TELEGRAM_WEBHOOK_URL)")
    assert "Traceback" not in stderr and "Unclosed" not in stderr
    # --log-level debug adds where it came from
    code, _, debug = await convoflow_command(*args, "--log-level", "debug", **settings)
    assert code == 2 and last_line(debug) == last_line(stderr)
    assert "Traceback (most recent call last)" in debug and "telegram.error.BadRequest" in debug


async def test_a_port_in_use_is_one_line_naming_the_setting(telegram: FakeTelegram) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        code, _, stderr = await convoflow_command("run", "guessbot", "--channel", "telegram", "--store", "memory://",
                                                  "--host", "127.0.0.1", "--port", str(port),
                                                  TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=telegram.url)
    finally:
        taken.close()
    assert code == 2
    line = last_line(stderr)
    assert line.startswith(f"convoflow: error: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in line and line.endswith("(the address is --host, the port --port or PORT)")
    assert "Traceback" not in stderr and "Unclosed" not in stderr


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
    code, _, stderr = await convoflow_command("run", "bots/guessbot.py", "--channel", "telegram", "--store", "memory://", **env)
    assert code == 2
    assert error in stderr and "Traceback" not in stderr


def runner(dialog: Callable[..., Any], store: Store) -> TurnRunner:
    return TurnRunner(Engine(dialog, store))


def test_a_bot_module_opts_into_edited_messages(tmp_path: Path) -> None:
    (tmp_path / "editbot.py").write_text(
        "from convoflow.adapters.telegram import TelegramOptions\n"
        "from convoflow import dialog, get_client_response\n"
        "telegram_options = TelegramOptions(edited_messages=True)\n"
        "@dialog()\n"
        "def main():\n"
        "    yield get_client_response()\n"
    )
    bot = load_bot(str(tmp_path / "editbot.py"))
    channel = SERVER_CHANNELS["telegram"](runner(bot.dialog, MemoryStore()), MemoryStore(), {"TELEGRAM_BOT_TOKEN": TOKEN})
    assert isinstance(channel, TelegramChannel) and channel.options.edited_messages
    (tmp_path / "dictbot.py").write_text((tmp_path / "editbot.py").read_text().replace(
        "TelegramOptions(edited_messages=True)", "{'edited_messages': True}"))
    wrong = load_bot(str(tmp_path / "dictbot.py"))
    with pytest.raises(ValueError, match="dictbot.telegram_options must be a TelegramOptions, not dict"):
        SERVER_CHANNELS["telegram"](runner(wrong.dialog, MemoryStore()), MemoryStore(), {"TELEGRAM_BOT_TOKEN": TOKEN})
    plain = load_bot("bots/guessbot.py")
    channel = SERVER_CHANNELS["telegram"](runner(plain.dialog, MemoryStore()), MemoryStore(), {"TELEGRAM_BOT_TOKEN": TOKEN})
    assert isinstance(channel, TelegramChannel) and not channel.options.edited_messages


@pytest.mark.parametrize(("arguments", "error"), [
    ({"token": "nope"}, "bot token is malformed"),
    ({"webhook_url": "https://bot.example.org/telegram/webhook"}, "needs a webhook secret"),
    ({"webhook_url": "https://bot.example.org/telegram/webhook", "webhook_secret": "a b"}, "webhook secret must be"),
])
def test_the_channel_checks_its_arguments_too(arguments: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TelegramChannel(runner(load_bot("bots/guessbot.py").dialog, MemoryStore()), **{"token": TOKEN, **arguments})
