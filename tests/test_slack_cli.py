"""`convoflow run BOT --channel slack` as a user runs it: a separate process, settings from the
environment, signed events over HTTP, replies at a fake Slack."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from tests.support.convoflow_process import ConvoflowProcess, clean_environment
from tests.support.fake_slack import FakeSlack
from tests.support.slack_harness import play_guessbot
from tests.support.slack_payloads import SIGNING_SECRET, dm, event_callback, signed_headers
from tests.test_cli import convoflow


async def test_guessbot_served_to_slack_by_the_cli(slack: FakeSlack, tmp_path: Path) -> None:
    bot = ConvoflowProcess(
        tmp_path / "bot.log", "bots/guessbot.py", "--channel", "slack", "--store", f"sqlite:///{tmp_path / 'bot.db'}",
        settings={"SLACK_BOT_TOKEN": "xoxb-fake-T111", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                  "SLACK_API_URL": slack.api_url},
    )
    try:
        await bot.launch()
        assert (await bot.wait_ready())["channels"] == ["slack"]
        async with aiohttp.ClientSession() as http:

            async def send(text: str) -> None:
                body = json.dumps(event_callback(dm(text)))
                async with http.post(f"{bot.url}/slack/events", data=body, headers=signed_headers(body)) as response:
                    assert response.status == 200

            async def inbox(count: int) -> list[str]:
                return [c.params["text"] for c in await slack.next_posts("D111", count)]

            await send("hi")
            assert await inbox(2) == ["Guess a number between 1 and 10.", "Your guess?"]
            await play_guessbot(send, inbox)
            async with http.post(f"{bot.url}/slack/events", data="{}", headers={"Content-Type": "application/json"}) as forged:
                assert forged.status == 401
    finally:
        code = await bot.stop(30)
    assert code == 0, bot.log()
    assert "channel=slack outcome=finished" in bot.log()


@pytest.mark.parametrize(("settings", "message"), [
    ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET is not set"),
    ({"SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN is not set"),
    ({"SLACK_BOT_TOKEN": "xoxp-user-token", "SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN must start with xoxb-"),
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-2"}, "SLACK_APP_TOKEN must start with xapp-"),
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": "slack.test/api"},
     "SLACK_API_URL must start with http:// or https://"),
    ({"SLACK_CLIENT_ID": "1.2", "SLACK_SIGNING_SECRET": "s"}, "SLACK_CLIENT_SECRET is not set"),
    ({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "c", "SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-1"},
     "not both"),
    ({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "c", "SLACK_SIGNING_SECRET": "s"},
     "SLACK_CLIENT_ID is set: Slack OAuth installs need a store that lasts"),
])
def test_missing_or_malformed_slack_settings_are_named(settings: dict[str, str], message: str) -> None:
    result = convoflow("run", "bots/guessbot.py", "--channel", "slack", "--store", "memory://",
                       env=clean_environment(**settings))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
