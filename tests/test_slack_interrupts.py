"""Interruptions, slash commands and multi-file shares through the Slack channel: real slack-bolt
code, signed requests, the loopback fake Slack."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from convoflow import ManualClock, dialog, get_client_response, send_message
from convoflow.adapters.host.loader import load_bot
from convoflow.scheduler import Scheduler
from convoflow.stores import MemoryStore
from convoflow.turns import Engine
from tests.support.fake_slack import FakeSlack
from tests.support.slack_harness import SlackApp, bot_engine, running_slack
from tests.support.slack_payloads import dm, signed_headers, slash_command

FORM = "application/x-www-form-urlencoded"
HELP = "Help: answer each question; /cancel stops, /start begins again."


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = await FakeSlack().start()
    yield slack
    await slack.close()


async def command(app: SlackApp, text: str, **options: Any) -> Any:
    body = slash_command(text, **options)
    return await app.post(body, signed_headers(body, content_type=FORM))


def shown(calls: list[Any]) -> list[str]:
    return [c.params.get("text", "") for c in calls]


async def test_the_slash_command_starts_helps_and_cancels_mid_form(fake: FakeSlack) -> None:
    async with running_slack(bot_engine("bots/signup.py", MemoryStore()), fake, command="/guessbot") as app:
        answered = await command(app, "")
        assert answered.status == 200 and answered.text == ""  # acknowledged, nothing shown in its place
        assert shown(await fake.next_posts("D111", 2)) == ["Welcome! Let's get you signed up.", "What's your name?"]
        await app.send(dm("Ann"))
        assert shown(await fake.next_posts("D111", 1)) == ["Nice to meet you, Ann. How old are you?"]
        assert (await command(app, "HELP")).status == 200
        helped, again = await fake.next_posts("D111", 2)
        assert helped.params["text"].startswith("This form signs you up")
        assert again.params["text"] == "Nice to meet you, Ann. How old are you?"
        assert (await command(app, "cancel")).status == 200  # the bot's own /cancel: it asks first
        (question,) = await fake.next_posts("D111", 1)
        assert question.params["text"] == "Stop signing up? What you entered is dropped."
        await app.click(question, 1)  # No, go on
        assert shown(await fake.next_posts("D111", 1)) == ["Nice to meet you, Ann. How old are you?"]
        await app.send(dm(" /help"))  # the leading-space trick still works
        assert shown(await fake.next_posts("D111", 2))[1] == "Nice to meet you, Ann. How old are you?"
        await app.send(dm("34"))
        assert shown(await fake.next_posts("D111", 1)) == ["Your email address?"]
        assert (await command(app, "start")).status == 200
        assert shown(await fake.next_posts("D111", 2)) == ["Welcome! Let's get you signed up.", "What's your name?"]


async def test_a_slash_command_outside_a_dm_says_where_it_works(fake: FakeSlack) -> None:
    async with running_slack(bot_engine("bots/signup.py", MemoryStore()), fake) as app:
        answered = await command(app, "help", channel="C111", command="/signup")
        assert answered.status == 200 and "direct message" in answered.text
        assert fake.posts() == []


async def test_an_interruption_asking_its_own_question_and_one_while_a_timer_is_pending(fake: FakeSlack) -> None:
    bot = load_bot("tests/support/interrupt_bot.py")
    clock = ManualClock()
    engine = Engine(bot.dialog, MemoryStore(), app=bot.app, clock=clock, interrupts=bot.interrupts)
    async with running_slack(engine, fake) as app:
        await app.send(dm("hi"))
        await fake.next_posts("D111", 2)
        await app.send(dm(" /feedback"))
        (stars,) = await fake.next_posts("D111", 1)
        assert stars.params["text"] == "How many stars?"
        await app.click(stars, 2)
        assert shown(await fake.next_posts("D111", 2)) == ["Thanks for 3 stars.", "Your name?"]
        await app.send(dm("Ada"))
        (colour,) = await fake.next_posts("D111", 1)
        await app.click(colour, 0)
        assert shown(await fake.next_posts("D111", 1)) == ["Thinking for a minute..."]
        await app.send(dm("what can I do?"))
        assert shown(await fake.next_posts("D111", 1)) == [HELP]  # sleeping: nothing asked again
        await app.send(dm("/feedback"))
        await fake.next_posts("D111", 1)
        clock.advance(60)
        await Scheduler(engine, app.channel.send).fire_due()
        assert shown(await fake.next_posts("D111", 1)) == ["Done, Ada: red."]
        await app.send(dm("1"))
        assert shown(await fake.next_posts("D111", 1)) == ["Thanks for 1 stars."]


@dialog()
def collect() -> Any:
    yield send_message("Send your files.")
    for _ in range(3):
        got = yield get_client_response()
        yield send_message(f"{got['media']} {got['source']} {got['caption']!r}")


async def test_every_file_of_a_multi_file_share_reaches_the_flow(fake: FakeSlack) -> None:
    async with running_slack(Engine(collect, MemoryStore(), app="files"), fake) as app:
        await app.send(dm("hi"))
        await fake.next_posts("D111", 1)
        files = [{"id": f"F{n}", "name": name, "mimetype": mime, "url_private": f"https://files.slack.test/{name}"}
                 for n, (name, mime) in enumerate([("a.png", "image/png"), ("b.pdf", "application/pdf"),
                                                   ("c.jpg", "image/jpeg")])]
        event = dm("three files", subtype="file_share", files=files)
        assert (await app.send(event)).status == 200
        assert shown(await fake.next_posts("D111", 3)) == [
            "image https://files.slack.test/a.png 'three files'",
            "file https://files.slack.test/b.pdf ''",
            "image https://files.slack.test/c.jpg ''",
        ]
        assert (await app.send(event, retry=1)).status == 200  # Slack's retry: each file processed once
        await app.channel.runner.drain()
        assert len(fake.posts()) == 4
