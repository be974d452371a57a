"""Interruptions through the Engine on every store, warm (suspended plays kept) and replayed
(none kept: every turn replays the stored record), with a manual clock for the pending timer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from convoflow import Incoming, ManualClock, Text, dialog
from convoflow.buttons import ButtonRef
from convoflow.adapters.host.loader import BotMisconfigured, load_bot
from convoflow.stores import Store
from convoflow.turns import Engine

from tests.support.store_backends import each_store, warm_and_replayed  # noqa: F401 (fixtures: store, max_live)
from tests.support.timer_harness import TimerHarness

BOT = "tests/support/interrupt_bot.py"
HELP = "Help: answer each question; /cancel stops, /start begins again."


def harness(store: Store, max_live: int, clock: ManualClock | None = None, **options: Any) -> TimerHarness:
    bot = load_bot(BOT)
    engine = Engine(bot.dialog, store, app=bot.app, max_live=max_live, clock=clock or ManualClock(),
                    interrupts=bot.interrupts, **options)
    return TimerHarness(engine, engine.clock)  # type: ignore[arg-type]


async def test_help_mid_form_shows_help_then_asks_the_pending_question_again(store: Store, max_live: int) -> None:
    h = harness(store, max_live)
    assert await h.say("hi") == ["Hi! A short form.", "Your name?"]
    before = await store.load(h.key())
    assert await h.say("/help") == [HELP, "Your name?"]
    after = await store.load(h.key())
    assert before is not None and after is not None and after.state == before.state  # record untouched
    for typed in ("HELP", "  what can i do?  ", "/Help me please"):
        assert await h.say(typed) == [HELP, "Your name?"]
    assert await h.say("Ada") == ["Favourite colour?"]
    asked = h.sent[-1].message
    assert isinstance(asked, Text) and [o.label for o in asked.options] == ["Red", "Blue"]
    assert await h.say("help") == [HELP, "Favourite colour?"]
    again = h.sent[-1].message
    assert isinstance(again, Text) and again.options == asked.options  # the buttons come back too
    assert await h.say("blue") == ["Thinking for a minute..."]


async def test_a_button_of_the_question_asked_again_answers_it(store: Store, max_live: int) -> None:
    h = harness(store, max_live)
    await h.say("hi")
    await h.say("Ada")
    await h.say("/help")
    session = await store.load(h.key())
    assert session is not None
    pressed = Incoming(h.key(), "press-1", "button", button=ButtonRef(session.last[-1]["seq"], 1),
                       address={"user": "ada"})
    await h.engine.handle(pressed, h.deliver)
    assert h.texts()[-1] == "Thinking for a minute..."
    assert await h.advance(60) == ["Done, Ada: blue."]


async def test_an_interruption_that_asks_its_own_question_then_resumes(store: Store, max_live: int) -> None:
    h = harness(store, max_live)
    await h.say("hi")
    assert await h.say("/feedback") == ["How many stars?"]
    assert await h.say("/help") == [HELP, "Your name?"]  # another match replaces the running one
    assert await h.say("/feedback") == ["How many stars?"]
    # a process that never saw this session continues the interruption from the store
    other = harness(store, max_live)
    assert await other.say("3") == ["Thanks for 3 stars.", "Your name?"]
    assert await other.say("Ada") == ["Favourite colour?"]


async def test_a_handler_cancels_or_resumes_as_its_answer_says(store: Store, max_live: int) -> None:
    h = harness(store, max_live)
    await h.say("hi")
    assert await h.say("/quit") == ["Really quit?"]
    assert await h.say("No") == ["Your name?"]
    assert await h.say("/quit") == ["Really quit?"]
    assert await h.say("Yes") == ["Bye."]
    session = await store.load(h.key())
    assert session is not None and not session.running
    assert await h.say("hello") == ["Hi! A short form.", "Your name?"]  # the next message starts afresh


async def test_a_handler_restarts_and_the_builtin_commands_still_work(store: Store, max_live: int) -> None:
    h = harness(store, max_live)
    await h.say("hi")
    await h.say("Ada")
    assert await h.say("/over") == ["From the top.", "Hi! A short form.", "Your name?"]
    await h.say("Bob")
    assert await h.say("/start") == ["Hi! A short form.", "Your name?"]
    assert await h.say("/feedback") == ["How many stars?"]
    assert await h.say("/cancel") == ["Okay, stopped. Send /start to begin again."]
    session = await store.load(h.key())
    assert session is not None and session.state is None


async def test_an_interruption_while_a_timer_is_pending_sends_no_prompt_and_the_timer_still_fires(
        store: Store, max_live: int) -> None:
    h = harness(store, max_live)
    await h.say("hi")
    await h.say("Ada")
    assert await h.say("red") == ["Thinking for a minute..."]
    due = (await store.load(h.key())).due  # type: ignore[union-attr]
    assert await h.say("/help") == [HELP]  # sleeping: nothing asked again
    assert await h.say("/feedback") == ["How many stars?"]
    assert (await store.load(h.key())).due == due  # type: ignore[union-attr]
    assert await h.advance(60) == ["Done, Ada: red."]  # the flow's timer fires mid-interruption
    assert await h.say("2") == ["Thanks for 2 stars."]  # the interruption goes on; the flow is done
    session = await store.load(h.key())
    assert session is not None and not session.running and "interrupt" not in (session.state or {})


async def test_help_before_any_conversation_shows_help_only(store: Store, max_live: int) -> None:
    h = harness(store, max_live)
    assert await h.say("/help") == [HELP]
    assert await h.say("/feedback") == ["How many stars?"]
    assert await h.say("1") == ["Thanks for 1 stars."]
    assert await h.say("hi") == ["Hi! A short form.", "Your name?"]


@dialog()
def broken() -> Any:
    yield send_nothing()


@dialog()
def send_nothing() -> None:
    raise RuntimeError("the help service is down")


async def test_a_failing_handler_apologises_and_returns_to_the_flow(store: Store, max_live: int) -> None:
    bot = load_bot(BOT)
    engine = Engine(bot.dialog, store, app=bot.app, max_live=max_live, clock=ManualClock(),
                    interrupts={**bot.interrupts, "/help": broken})
    h = TimerHarness(engine, engine.clock)  # type: ignore[arg-type]
    await h.say("hi")
    assert await h.say("/help") == [engine.apology, "Your name?"]
    assert await h.say("Ada") == ["Favourite colour?"]


def test_bad_interrupts_are_refused_naming_the_entry(tmp_path: Path) -> None:
    bot = tmp_path / "badbot.py"
    bot.write_text("from convoflow import dialog, send_message\n"
                   "@dialog()\ndef main():\n    yield send_message('hi')\n"
                   "def plain():\n    pass\n"
                   "interrupts = {'/help': plain}\n")
    with pytest.raises(BotMisconfigured, match=r"interrupts\['/help'\] must be a @dialog function"):
        load_bot(str(bot))
    with pytest.raises(ValueError, match="non-empty"):
        Engine(load_bot(BOT).dialog, None, interrupts={" ": load_bot(BOT).dialog})  # type: ignore[arg-type]


async def test_commands_are_configurable_as_before(store: Store) -> None:
    bot = load_bot(BOT)
    engine = Engine(bot.dialog, store, app=bot.app, commands={"/again": "restart", "/stop": "cancel"},
                    clock=ManualClock())
    h = TimerHarness(engine, engine.clock)  # type: ignore[arg-type]
    await h.say("hi")
    assert await h.say("/start") == ["Favourite colour?"]  # no longer a command: the flow's answer
    assert await h.say("/again") == ["Hi! A short form.", "Your name?"]
    assert await h.say("/stop") == ["Okay, stopped. Send /start to begin again."]
