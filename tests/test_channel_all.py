"""`convoflow run BOT --channel all`: one flow served to Telegram and Slack at the same time, from
one process and one store."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp

from convoflow.adapters.telegram.channel import SECRET_HEADER
from tests.support.convoflow_process import ConvoflowProcess, convoflow_command
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import BOT_ID, TOKEN, FakeTelegram, message, private_chat
from tests.support.slack_payloads import SIGNING_SECRET, dm, event_callback, signed_headers

WEBHOOK_SECRET = "all-channels_Secret"
WEB_SECRET = "all-channels-web-secret-0123"
START = ["Guess a number between 1 and 10.", "Your guess?"]


def all_channel_settings(telegram: FakeTelegram, slack: FakeSlack) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook", "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SLACK_BOT_TOKEN": slack.teams[0].bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url, "CONVOFLOW_WEB_SECRET": WEB_SECRET,
    }


Say = Callable[[str], Awaitable[list[str]]]
"""Send one text; returns the bot's replies to it."""


async def play(say: Say) -> list[str]:
    """A full guessbot game by bisection; returns every reply received, in order."""
    replies = await say("/start")
    assert replies == START
    low, high, guesses = 1, 10, 0
    while True:
        guess = (low + high) // 2
        guesses += 1
        replies += (answer := await say(str(guess)))
        if answer[0].startswith("You got it"):
            assert answer == [f"You got it in {guesses} {'guess' if guesses == 1 else 'guesses'}! "
                              "Send anything to play again."]
            return replies
        assert answer in (["Higher!", "Your guess?"], ["Lower!", "Your guess?"]), answer
        low, high = (guess + 1, high) if answer[0] == "Higher!" else (low, guess - 1)
        assert low <= high, "the secret changed mid-game"


def replies_expected(first: str) -> int:
    """How many replies a turn has, from its first: each but the last is followed by "Your guess?"."""
    return 2 if first in ("Higher!", "Lower!", START[0]) else 1


async def test_one_flow_on_telegram_and_slack_at_once_through_one_process_and_store(
    telegram: FakeTelegram, slack: FakeSlack, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'bot.db'}"
    bot = ConvoflowProcess(tmp_path / "bot.log", "bots/guessbot.py", "--channel", "all", "--store", store,
                           settings=all_channel_settings(telegram, slack))
    try:
        await bot.start()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{bot.url}/healthz?ready=1") as ready:
                assert (await ready.json())["channels"] == ["telegram", "slack", "web"]
            assert [c.params["url"] for c in telegram.of("setWebhook")] == ["https://bot.example.org/telegram/webhook"]

            async def on_telegram(text: str) -> list[str]:
                before = len(telegram.texts(42))
                update = message(private_chat(42), text=text)
                async with http.post(f"{bot.url}/telegram/webhook", data=json.dumps(update),
                                     headers={SECRET_HEADER: WEBHOOK_SECRET}) as response:
                    assert response.status == 200
                await telegram.wait_for(lambda: len(telegram.texts(42)) > before)
                first = telegram.texts(42)[before]
                await telegram.wait_for(lambda: len(telegram.texts(42)) >= before + replies_expected(first or ""))
                return [str(t) for t in telegram.texts(42)[before:]]

            async def on_slack(text: str) -> list[str]:
                body = json.dumps(event_callback(dm(text)))
                async with http.post(f"{bot.url}/slack/events", data=body, headers=signed_headers(body)) as response:
                    assert response.status == 200
                [first] = await slack.next_posts("D111", 1)
                more = await slack.next_posts("D111", replies_expected(first.params["text"]) - 1)
                return [c.params["text"] for c in (first, *more)]

            on_telegram_replies, on_slack_replies = await asyncio.gather(play(on_telegram), play(on_slack))
        await asyncio.sleep(0.3)  # anything sent twice would have arrived by now
        # Every reply arrived once, in order, on the platform it belongs to.
        assert telegram.texts(42) == on_telegram_replies
        assert slack.texts(channel="D111") == on_slack_replies
        assert {c.chat_id for c in telegram.sent()} == {42}
        assert await bot.stop() == 0
    finally:
        await bot.kill()
    log = bot.log()
    assert "channel=telegram outcome=finished" in log and "channel=slack outcome=finished" in log
    assert "Traceback" not in log

    code, listed, _ = await convoflow_command("sessions", "--store", store, "list")
    assert code == 0
    assert sorted(line.split()[0] for line in listed.splitlines()) == [
        "slack:-:T111:D111/guessbot", f"telegram:{BOT_ID}:42/guessbot"]
    for key in ("slack:-:T111:D111/guessbot", f"telegram:{BOT_ID}:42/guessbot"):
        code, shown, _ = await convoflow_command("sessions", "--store", store, "show", key)
        assert code == 0 and re.search(r"draw_secret: \d+", shown), shown


async def test_every_channel_of_all_is_configured_or_none_starts() -> None:
    """`--channel all` needs both channels' settings; the one missing is named."""
    code, _, error = await convoflow_command("run", "bots/guessbot.py", "--channel", "all", "--store", "memory://",
                                             TELEGRAM_BOT_TOKEN=TOKEN)
    assert code == 2
    assert "SLACK_SIGNING_SECRET is not set" in error and "Traceback" not in error
