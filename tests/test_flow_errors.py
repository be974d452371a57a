"""Whatever flow code raises ends that turn alone: a `convoflow run --channel telegram` process
whose step calls argparse on the user's text (SystemExit on bad input) answers that user with the
apology, acknowledges the update, logs the turn as failed, and goes on serving everyone, also
when Telegram delivers the same update again, before or after a restart."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import aiohttp

from convoflow.adapters.telegram.channel import SECRET_HEADER
from tests.support.convoflow_process import ConvoflowProcess
from tests.support.fake_telegram import BOT_ID, TOKEN, FakeTelegram, message, private_chat

SECRET = "flow-Errors_1"
APOLOGY = "Sorry, something went wrong on our side. Please try again."

TIMER_BOT = textwrap.dedent('''
    import argparse

    from convoflow import dialog, get_client_response, send_message


    @dialog()
    def parse_timer(text):
        parser = argparse.ArgumentParser(prog="timer")
        parser.add_argument("--minutes", type=int, required=True)
        parser.add_argument("name")
        return vars(parser.parse_args(text.split()))  # SystemExit(2) on what it cannot parse


    @dialog()
    def main():
        yield send_message("Set a timer: --minutes N NAME")
        while True:
            timer = yield parse_timer((yield get_client_response()))
            yield send_message(f"timer {timer['name']} set for {timer['minutes']} minutes")
''')


class TimerBot:
    def __init__(self, fake: FakeTelegram, tmp_path: Path, name: str) -> None:
        self.fake = fake
        self.process = ConvoflowProcess(
            tmp_path / f"{name}.log", str(tmp_path / "timerbot.py"), "--channel", "telegram",
            "--store", f"sqlite:///{tmp_path / 'timers.db'}",
            settings={"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.url,
                      "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook",
                      "TELEGRAM_WEBHOOK_SECRET": SECRET})

    async def post(self, update: dict[str, Any]) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.process.url}/telegram/webhook", data=json.dumps(update),
                                 headers={SECRET_HEADER: SECRET}) as response:
                return response.status

    async def say(self, chat: int, update: dict[str, Any], replies: int) -> list[str | None]:
        before = len(self.fake.texts(chat))
        assert await self.post(update) == 200
        await self.fake.wait_for(lambda: len(self.fake.texts(chat)) >= before + replies)
        return self.fake.texts(chat)[before:]

    def alive(self) -> bool:
        return self.process.process is not None and self.process.process.returncode is None

    async def logged(self, pattern: str) -> None:
        """Wait for a line matching `pattern` in the log (a turn's line follows its delivery)."""
        for _ in range(500):
            if re.search(pattern, self.process.log()):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {pattern!r} in the log:\n{self.process.log()[-3000:]}")


async def test_a_step_raising_systemexit_gets_the_apology_and_the_process_serves_on(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    (tmp_path / "timerbot.py").write_text(TIMER_BOT)
    ann, bob = private_chat(41), private_chat(42)
    bot = TimerBot(telegram, tmp_path, "first")
    await bot.process.start()
    try:
        assert await bot.say(41, message(ann, text="/start"), 1) == ["Set a timer: --minutes N NAME"]
        bad = message(ann, text="--minutes five tea")
        assert await bot.say(41, bad, 1) == [APOLOGY]
        assert bot.alive()
        await bot.logged(rf"turn telegram:{BOT_ID}:41/timerbot channel=telegram outcome=failed")
        assert "outcome=store_error" not in bot.process.log()

        # Everyone else is still served, and so is Ann.
        assert await bot.say(42, message(bob, text="/start"), 1) == ["Set a timer: --minutes N NAME"]
        assert await bot.say(42, message(bob, text="--minutes 5 tea"), 1) == ["timer tea set for 5 minutes"]
        assert await bot.say(41, message(ann, text="--minutes 3 eggs"), 1) == ["timer eggs set for 3 minutes"]

        sent = len(telegram.sent())
        assert await bot.post(bad) == 200  # Telegram delivering it again: processed already
        assert bot.alive() and len(telegram.sent()) == sent
        assert await bot.process.stop() == 0
    finally:
        await bot.process.kill()

    restarted = TimerBot(telegram, tmp_path, "second")
    await restarted.process.start()
    try:
        assert await restarted.post(bad) == 200  # again after a restart
        assert restarted.alive() and len(telegram.sent()) == sent
        worse = message(ann, text="--minutes")
        assert await restarted.say(41, worse, 1) == [APOLOGY]  # a new bad update, played from the store
        assert await restarted.say(42, message(bob, text="--minutes 1 rice"), 1) == ["timer rice set for 1 minutes"]
        assert restarted.alive()
        assert await restarted.process.stop() == 0
    finally:
        await restarted.process.kill()
