"""`convoflow run BOT --channel slack` as a user runs it: a separate process, settings from the
environment, signed events over HTTP, replies at a fake Slack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from tests.fake_slack import FakeSlack
from tests.mongo_server import free_port
from tests.slack_harness import play_guessbot
from tests.slack_payloads import SIGNING_SECRET, dm, event_callback, signed_headers
from tests.test_cli import ROOT, convoflow


def environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "TELEGRAM_")) and k not in ("CONVOFLOW_STORE", "MONGODB_URI", "PORT")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(settings)
    return env


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = await FakeSlack().start()
    yield slack
    await slack.close()


async def test_guessbot_served_to_slack_by_the_cli(fake: FakeSlack, tmp_path: Path) -> None:
    port = free_port()
    store = f"sqlite:///{tmp_path / 'bot.db'}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "run", "bots/guessbot.py", "--channel", "slack", "--store", store,
        "--host", "127.0.0.1", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=environment(SLACK_BOT_TOKEN="xoxb-fake-T111", SLACK_SIGNING_SECRET=SIGNING_SECRET,
                        SLACK_API_URL=fake.api_url, PORT=str(port)),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"{base}/healthz?ready=1") as ready:
                        if ready.status == 200:
                            assert (await ready.json())["channels"] == ["slack"]
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert process.returncode is None, "convoflow exited early"
                await asyncio.sleep(0.05)

            async def send(text: str) -> None:
                body = json.dumps(event_callback(dm(text)))
                async with http.post(f"{base}/slack/events", data=body, headers=signed_headers(body)) as response:
                    assert response.status == 200

            async def inbox(count: int) -> list[str]:
                return [c.params["text"] for c in await fake.next_posts("D111", count)]

            await send("hi")
            assert await inbox(2) == ["Guess a number between 1 and 10.", "Your guess?"]
            await play_guessbot(send, inbox)
            async with http.post(f"{base}/slack/events", data="{}", headers={"Content-Type": "application/json"}) as forged:
                assert forged.status == 401
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    assert "channel=slack outcome=finished" in output.decode()
    listed = convoflow("sessions", "--store", store, "list")
    assert listed.stdout.startswith("slack:-:T111:D111/guessbot"), listed.stdout


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
                       env=environment(**settings))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
