"""The testing kit's Chat driver and pytest fixture, used on every example bot as a bot author
would: through the `chat` fixture the plugin registers (pytest11), on the memory store and on
real SQLite and MongoDB stores, warm and replaying every turn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from convoflow import Media, dialog, get_client_response, send_message
from convoflow.testing import Chat, ChatError, FlowFailed

ChatMaker = Callable[..., Chat]


@pytest.fixture(params=["warm", "replaying"])
def make(request: pytest.FixtureRequest, chat: ChatMaker) -> ChatMaker:
    """The plugin's fixture, keeping plays in memory between turns or replaying every turn."""
    return lambda bot, *args, **options: chat(bot, *args, replay_every_turn=request.param == "replaying", **options)


async def test_signup(make: ChatMaker) -> None:
    signup = make("bots/signup.py")
    assert await signup.say("hi") == ["Welcome! Let's get you signed up.", "What's your name?"]
    assert await signup.say("Ada") == ["Nice to meet you, Ada. How old are you?"]
    assert await signup.say("twelve") == ["Please send your age as a number between 13 and 120."]
    await signup.say("36")
    assert await signup.say("ada@example.org") == ["Which plan would you like?"]
    assert signup.buttons == ["Free", "Pro (9/month)", "Team (29/month)"]
    assert await signup.press("Team (29/month)") == ["Sign up Ada (36, ada@example.org) for the team plan?"]
    assert not signup.done
    assert await signup.press("Yes") == ["Done! Welcome aboard, Ada."]
    assert signup.done and signup.buttons == []
    assert signup.result == {"name": "Ada", "age": 36, "email": "ada@example.org", "plan": "team", "confirmed": True}


async def test_guessbot(make: ChatMaker) -> None:
    game = make("guessbot")
    assert await game.say("hi") == ["Guess a number between 1 and 10.", "Your guess?"]
    assert await game.say("ten-ish") == ["Numbers only, please."]
    for guess in range(1, 11):
        replies = await game.say(str(guess))
        if game.done:
            break
        assert replies == ["Higher!", "Your guess?"]
    assert replies[0].startswith(f"You got it in {guess} guess") and game.result == guess  # the typo counted none
    assert game.replies[:2] == ["Guess a number between 1 and 10.", "Your guess?"]


async def test_menu(make: ChatMaker) -> None:
    menu = make("menu")
    await menu.say("hi")
    assert menu.buttons == ["Tell me a fact", "Count up", "Quit"]
    assert await menu.press("Count up") == ["The counter is at 1.", "What would you like?"]
    assert await menu.say("count") == ["The counter is at 2.", "What would you like?"]
    assert await menu.press("Quit") == ["Bye! You came by the menu 3 times."]
    assert menu.done and menu.result == 3


async def test_dragons(make: ChatMaker) -> None:
    quest = make("dragons")
    assert await quest.say("hi") == ["Greetings, traveller! What is your name?"]
    await quest.say("Ada")
    assert await quest.say("cave") == ["A sleeping dragon! Do you sneak past it or wake it?"]
    assert await quest.say("wake it") == ["The dragon yawns, and offers you tea. A new friend!", "The end. Farewell, Ada!"]
    assert quest.result == "friendship"


async def test_reminder_timers_fire_as_the_fake_clock_moves(make: ChatMaker) -> None:
    reminders = make("reminder")
    await reminders.say("hi")
    await reminders.say("remind me in 10 minutes to stretch")
    await reminders.say("in 1 hour to call Bob")
    assert await reminders.advance(minutes=9) == []
    assert await reminders.advance(minutes=1) == ["⏰ Reminder: stretch"]
    # both due on the way: each fires at its own time, in order
    await reminders.say("in 5 minutes to drink water")
    assert await reminders.advance(hours=2) == ["⏰ Reminder: drink water", "⏰ Reminder: call Bob"]
    assert await reminders.say("list") == ["Nothing to remind you of yet."]


async def test_checkout_events_timeouts_and_idleness(make: ChatMaker) -> None:
    paid = make("checkout", user="paid")
    await paid.say("hi")
    await paid.press("A mug, 8.00 EUR")
    assert await paid.signal("paid", {"order": "A-17"}) == ["Payment received, thank you! Order A-17 is on its way."]
    assert paid.result == "paid"

    expired = make("checkout", user="late")
    await expired.say("hi")
    await expired.press("Coffee beans, 12.00 EUR")
    assert await expired.advance(minutes=14) == []
    assert await expired.advance(minutes=1) == ["The payment link has expired; nothing was charged. Send /start to try again."]
    assert expired.result == "expired"

    idle = make("checkout", user="idle")
    await idle.say("hi")
    assert await idle.advance(hours=1) == ["This checkout has expired. Send /start to begin again."]
    assert idle.done and idle.result is None


@dialog()
def media_echo():
    sent = yield get_client_response()
    yield send_message(Media("file", "receipt.pdf", f"got your {sent['media']} {sent['source']}: {sent['caption']}"))


async def test_media_both_ways(chat: ChatMaker) -> None:
    echo = chat(media_echo)
    await echo.say("hi")
    assert await echo.send_media("cat.jpg", caption="my cat") == ["[file: receipt.pdf] got your image cat.jpg: my cat"]
    assert echo.messages[-1] == Media("file", "receipt.pdf", "got your image cat.jpg: my cat")
    with pytest.raises(ValueError, match="'image' or 'file'"):
        await echo.send_media("v.mp4", kind="video")


@pytest.mark.parametrize("backend", ["sqlite", "mongo"])
async def test_a_chat_on_a_real_store_keeps_the_session_there(backend: str, tmp_path: Path,
                                                                request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("mongo_uri")
    async with Chat("signup", url, user="ada", replay_every_turn=True) as first:
        await first.say("hi")
        await first.say("Ada")
        session = await first.store.load(first.key)
        assert session is not None and session.running and str(session.key) == "test:ada/signup"
    # another Chat on the same store and user continues the stored conversation
    async with Chat("signup", url, user="ada") as again:
        assert await again.say("36") == ["Your email address?"]


@dialog()
def fragile():
    answer = yield get_client_response()
    yield send_message(f"{100 // int(answer)} per cent")
    yield get_client_response()


async def test_readable_failures_show_the_conversation_so_far(chat: ChatMaker) -> None:
    bot = chat(fragile)
    await bot.say("hi")
    assert await bot.say("4") == ["25 per cent"]
    with pytest.raises(ChatError) as no_result:
        bot.result
    assert "the conversation has not ended" in str(no_result.value) and "  you: 4\n  bot: 25 per cent" in str(no_result.value)
    with pytest.raises(ChatError, match="the bot has shown no buttons"):
        await bot.press("OK")

    crashing = chat(fragile, user="zero")
    await crashing.say("hi")
    with pytest.raises(FlowFailed) as failed:
        await crashing.say("0")
    message = str(failed.value)
    assert "the flow raised in this turn (you: 0)" in message and "ZeroDivisionError" in message
    assert message.endswith("the conversation so far (test:zero/fragile):\n  you: hi\n  you: 0\n"
                            "  bot: Sorry, something went wrong on our side. Please try again.")

    quiet = chat(fragile, user="quiet", raise_errors=False)
    await quiet.say("hi")
    assert await quiet.say("0") == ["Sorry, something went wrong on our side. Please try again."]

    with pytest.raises(ChatError, match="no conversation yet"):
        await chat(fragile, user="nobody").signal("paid")


def pytest_run(folder: Path, asyncio_mode: str) -> subprocess.CompletedProcess[str]:
    """A bot author's own pytest run of `folder`/test_bot.py, with the plugin as installed."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
                           f"asyncio_mode={asyncio_mode}", str(folder / "test_bot.py")],
                          capture_output=True, text=True, timeout=120, cwd=folder)


def test_the_plugin_is_registered_and_shows_the_conversation_when_an_assertion_fails(tmp_path: Path) -> None:
    (tmp_path / "test_bot.py").write_text(
        "async def test_signup(chat):\n"
        "    bot = chat('signup')\n"
        "    await bot.say('hi')\n"
        "    assert await bot.say('Ada') == ['Hello, Ada!']\n"
    )
    ran = pytest_run(tmp_path, "auto")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    out = ran.stdout
    assert "the bot's replies differ:" in out
    assert "got:      ['Nice to meet you, Ada. How old are you?']" in out and "expected: ['Hello, Ada!']" in out
    assert "the conversation so far:" in out and "you: hi" in out and "bot: What's your name?" in out


def test_the_fixture_works_in_strict_asyncio_mode(tmp_path: Path) -> None:
    (tmp_path / "test_bot.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.asyncio\n"
        "async def test_menu(chat):\n"
        "    menu = chat('menu')\n"
        "    await menu.say('hi')\n"
        "    assert await menu.press('Quit') == ['Bye! You came by the menu 1 times.']\n"
    )
    ran = pytest_run(tmp_path, "strict")
    assert ran.returncode == 0, ran.stdout + ran.stderr


