"""Console transcripts of the example bots, driven through piped input."""

from __future__ import annotations

import io
import random
import textwrap

import pytest

from convoflow.adapters.channel import Channel, router
from convoflow.adapters.console.channel import ConsoleChannel, render
from convoflow.adapters.host.loader import load_bot
from convoflow.delivery import DeliveryFailed
from convoflow.messages import Incoming, Media, Option, Reply, SessionKey, Text
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from convoflow.stores import MemoryStore, Store


async def chat(bot_spec: str, lines: str, store: Store | None = None, session: str = "test") -> str:
    bot = load_bot(bot_spec)
    engine = Engine(bot.dialog, store or MemoryStore(), bot.fallback, app=bot.app)
    out = io.StringIO()
    await ConsoleChannel(TurnRunner(engine), session=session, stdin=io.StringIO(lines), stdout=out).run()
    return out.getvalue()


def transcript(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture
def secret_four(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "randint", lambda low, high: 4)


async def test_guessbot_transcript(secret_four: None) -> None:
    out = await chat("bots/guessbot.py", "7\nfour\n2\n4\n")
    assert out == transcript("""
        bot> Guess a number between 1 and 10.
        bot> Your guess?
        you> 7
        bot> Lower!
        bot> Your guess?
        you> four
        bot> Numbers only, please.
        you> 2
        bot> Higher!
        bot> Your guess?
        you> 4
        bot> You got it in 3 guesses! Send anything to play again.
        """)


async def test_quit_mid_flow_and_resume_in_a_new_run(secret_four: None) -> None:
    store = MemoryStore()
    first = await chat("bots/guessbot.py", "9\n", store)
    assert first.endswith("you> 9\nbot> Lower!\nbot> Your guess?\n")
    second = await chat("bots/guessbot.py", "4\n", store)
    assert second == transcript("""
        (resuming session console:test/guessbot where you left off)
        bot> Lower!
        bot> Your guess?
        you> 4
        bot> You got it in 2 guesses! Send anything to play again.
        """)


async def test_signup_form_with_numbered_choices_and_validation() -> None:
    out = await chat("bots/signup.py", "Ann\nold\n7\n34\nann@example\nAnn@Example.org\n5\n2\nyes\n")
    assert out == transcript("""
        bot> Welcome! Let's get you signed up.
        bot> What's your name?
        you> Ann
        bot> Nice to meet you, Ann. How old are you?
        you> old
        bot> Please send your age as a number between 13 and 120.
        you> 7
        bot> Please send your age as a number between 13 and 120.
        you> 34
        bot> Your email address?
        you> ann@example
        bot> That doesn't look like an email address. Try again?
        you> Ann@Example.org
        bot> Which plan would you like?
             1) Free
             2) Pro (9/month)
             3) Team (29/month)
        you> 5
        bot> Please pick one of the plans.
             1) Free
             2) Pro (9/month)
             3) Team (29/month)
        you> 2
        bot> Sign up Ann (34, ann@example.org) for the pro plan?
             1) Yes
             2) No
        you> yes
        bot> Done! Welcome aboard, Ann.
        """)


async def test_menu_loop_with_goto_keeps_state_small() -> None:
    store = MemoryStore()
    out = await chat("bots/menu.py", "1\n2\ncount\n" + "1\n" * 200 + "3\n", store)
    assert "bot> The counter is at 2." in out
    assert out.count("bot> Honey never spoils.") == 67
    assert out.endswith("bot> Bye! You came by the menu 204 times.\n")
    [session] = await store.list_sessions()
    assert session.state is not None and len(str(session.state)) < 400


async def test_dragons_in_run_style() -> None:
    out = await chat("bots/dragons.py", "Ann\nswamp\ncave\nsneak past\n")
    assert out == transcript("""
        bot> Greetings, traveller! What is your name?
        you> Ann
        bot> Ann is a beautiful name!
        bot> Ann, two paths lie ahead: the cave or the mountain. Which do you take?
        you> swamp
        bot> The wind howls. Say 'cave' or 'mountain'.
        bot> Ann, two paths lie ahead: the cave or the mountain. Which do you take?
        you> cave
        bot> A sleeping dragon! Do you sneak past it or wake it?
        you> sneak past
        bot> You tiptoe past and find a heap of gold.
        bot> The end. Farewell, Ann!
        """)


async def test_cancel_and_start_commands(secret_four: None) -> None:
    out = await chat("bots/guessbot.py", "1\n/cancel\n/start\n4\n")
    assert "bot> Okay, stopped. Send /start to begin again.\n" in out
    assert out.count("bot> Guess a number between 1 and 10.") == 2
    assert out.endswith("bot> You got it in 1 guess! Send anything to play again.\n")


async def test_a_finished_conversation_starts_again_on_the_next_run(secret_four: None) -> None:
    store = MemoryStore()
    await chat("bots/guessbot.py", "4\n", store)
    again = await chat("bots/guessbot.py", "", store)
    assert again == "bot> Guess a number between 1 and 10.\nbot> Your guess?\n"


def test_render_media_and_options() -> None:
    assert render(Media("image", "https://example.org/cat.png", "A cat")) == "bot> [image: https://example.org/cat.png] A cat"
    assert render(Text("Pick\none", (Option("A"), Option("B", 2)))) == "bot> Pick\n     one\n     1) A\n     2) B"


async def test_the_console_is_a_channel_replies_with_no_update_in_hand_reach_it(secret_four: None) -> None:
    """Replies left waiting (here: committed while the terminal was unreachable) are routed by the
    host to the channel their address names, the console as any other."""
    store = MemoryStore()
    bot = load_bot("bots/guessbot.py")
    engine = Engine(bot.dialog, store, bot.fallback, app=bot.app, handoff_seconds=0)
    out = io.StringIO()
    console: Channel = ConsoleChannel(TurnRunner(engine), session="test", stdin=io.StringIO(""), stdout=out)
    assert console.name == "console" and console.routes() == []
    await console.start()  # starts the conversation
    key = SessionKey("console:test", "guessbot")

    async def unreachable(reply: Reply) -> None:
        raise OSError("terminal gone")

    with pytest.raises(DeliveryFailed):
        await engine.handle(Incoming(key, "typed-elsewhere", text="9", address={"via": "console"}), unreachable)
    assert await engine.redeliver_waiting(router([console])) == 2
    await console.stop()
    assert out.getvalue().endswith("bot> Lower!\nbot> Your guess?\n")

