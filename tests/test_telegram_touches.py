"""Telegram around the conversation: the command menu, a pressed question's keyboard replaced by
the choice, "typing..." while a turn runs long, interruptions, and long polling that confirms an
update only after its turn committed (a process killed mid-turn gets it again)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from convoflow import ManualClock, SessionKey, dialog, get_client_response, send_message
from convoflow.scheduler import Scheduler
from tests.support.convoflow_process import ConvoflowProcess
from tests.support.fake_telegram import BOT_ID, TOKEN, FakeTelegram, message, press, private_chat
from tests.support.telegram_harness import Bot, start_bot

ANN = private_chat(42)
HELP = "Help: answer each question; /cancel stops, /start begins again."


async def test_the_command_menu_lists_the_builtin_and_the_bots_interrupt_commands() -> None:
    bot = await start_bot("bots/signup.py")
    try:
        (menu,) = bot.fake.of("setMyCommands")
        commands = {c["command"]: c["description"] for c in menu.params["commands"]}
        assert set(commands) == {"start", "cancel", "help"}  # "help" typed as text is no command
        assert commands == {"start": "Start over", "help": "What this form asks, and how to stop",
                            "cancel": "Stop signing up"}  # the bot's /cancel replaces the built-in one
    finally:
        await bot.close()


async def test_a_pressed_questions_keyboard_is_replaced_by_the_choice() -> None:
    bot = await start_bot("bots/signup.py")
    try:
        for text in ("/start", "Ann", "34", "ann@example.org"):
            await bot.post(message(ANN, text=text))
        asked = bot.fake.sent(42)[-1]
        pressed = press(ANN, '"team"', message_id=1234, text=asked.text, reply_markup=asked.params["reply_markup"])
        await bot.post(pressed)
        (edit,) = bot.fake.of("editMessageText")
        assert edit.params == {"chat_id": 42, "message_id": 1234,
                               "text": "Which plan would you like?\n\n\u2713 Team (29/month)"}  # no keyboard left
        assert bot.fake.texts(42)[-1] == "Sign up Ann (34, ann@example.org) for the team plan?"
    finally:
        await bot.close()


async def test_help_mid_form_then_the_question_again_with_its_buttons() -> None:
    bot = await start_bot("bots/signup.py")
    try:
        for text in ("/start", "Ann", "34", "ann@example.org"):
            await bot.post(message(ANN, text=text))
        asked = bot.fake.sent(42)[-1]
        await bot.post(message(ANN, text="/help"))
        again = bot.fake.sent(42)[-1]
        assert bot.fake.texts(42)[-2].startswith("This form signs you up")
        assert again.text == asked.text and [b[0] for b in again.buttons()] == [b[0] for b in asked.buttons()]
        await bot.post(message(ANN, text="/cancel"))  # the bot's own /cancel asks first
        assert bot.fake.texts(42)[-1] == "Stop signing up? What you entered is dropped."
        await bot.post(press(ANN, "false"))
        assert bot.fake.texts(42)[-1] == asked.text
        await bot.post(press(ANN, '"free"'))
        assert bot.fake.texts(42)[-1] == "Sign up Ann (34, ann@example.org) for the free plan?"
    finally:
        await bot.close()


async def test_an_interruption_while_a_timer_is_pending() -> None:
    clock = ManualClock()
    bot = await start_bot("tests/support/interrupt_bot.py", clock=clock)
    try:
        for text in ("hi", "Ada", "red"):
            await bot.post(message(ANN, text=text))
        assert bot.fake.texts(42)[-1] == "Thinking for a minute..."
        await bot.post(message(ANN, text="/feedback"))
        assert bot.fake.texts(42)[-1] == "How many stars?"
        clock.advance(60)
        await Scheduler(bot.engine, bot.channel.send).fire_due()
        assert bot.fake.texts(42)[-1] == "Done, Ada: red."
        await bot.post(message(ANN, text="3"))
        assert bot.fake.texts(42)[-1] == "Thanks for 3 stars."
    finally:
        await bot.close()


gate = asyncio.Event()


@dialog()
async def slow_step() -> str:
    await gate.wait()
    return "done"


@dialog()
def slow() -> Any:
    yield get_client_response()
    result = yield slow_step()
    yield send_message(f"That took a while: {result}.")


async def test_typing_shows_while_a_step_runs_long() -> None:
    bot = await start_bot(slow, app="slow")
    try:
        await bot.post(message(ANN, text="/start"))
        gate.clear()
        posting = asyncio.create_task(bot.post(message(ANN, text="go")))
        action = await bot.fake.wait_for(lambda: bot.fake.of("sendChatAction"))
        assert action[0].params == {"chat_id": 42, "action": "typing"}
        gate.set()
        assert await posting == 200
        assert bot.fake.texts(42) == ["That took a while: done."]
    finally:
        gate.set()
        await bot.close()


async def polled(fake: FakeTelegram, predicate: Any, timeout: float = 60.0) -> Any:
    return await fake.wait_for(predicate, timeout)


async def test_long_polling_gets_an_update_again_after_a_process_is_killed_mid_turn(tmp_path: Path) -> None:
    fake = await FakeTelegram().start()
    gate_file = tmp_path / "gate"
    gate_file.write_text("hold")
    settings = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.url, "SLOW_BOT_GATE": str(gate_file),
                "CONVOFLOW_STORE": f"sqlite:///{tmp_path / 'sessions.db'}"}
    first = ConvoflowProcess(tmp_path / "first.log", "tests/support/slow_bot.py", "--channel", "telegram",
                             settings=settings)
    second = ConvoflowProcess(tmp_path / "second.log", "tests/support/slow_bot.py", "--channel", "telegram",
                              settings=settings)
    try:
        await first.start()
        hello = message(ANN, text="/start")
        fake.push(hello)
        await polled(fake, lambda: gate_file.with_suffix(".entered").exists())
        assert first.process is not None
        first.process.kill()  # mid-turn: nothing committed, the offset not confirmed
        await first.process.wait()
        assert all((c.params.get("offset") or 0) <= hello["update_id"] for c in fake.of("getUpdates"))
        gate_file.unlink()
        await second.start()
        await polled(fake, lambda: len(fake.texts(42)) >= 2)
        assert fake.texts(42) == ["I thought.", "Your name?"]
        await polled(fake, lambda: any((c.params.get("offset") or 0) > hello["update_id"] for c in fake.of("getUpdates")))
        await second.stop()
        # fetched again by a third process (unconfirmed by a crash, say), it is not handled twice
        fake.push(hello)
        third = ConvoflowProcess(tmp_path / "third.log", "tests/support/slow_bot.py", "--channel", "telegram",
                                 settings=settings)
        await third.start()
        later = message(ANN, text="Ann")
        fake.push(later)
        await polled(fake, lambda: any((c.params.get("offset") or 0) > later["update_id"] for c in fake.of("getUpdates")))
        await third.stop()
        assert fake.texts(42) == ["I thought.", "Your name?"]
    finally:
        await first.kill()
        await second.kill()
        await fake.close()


@pytest.fixture
async def interrupting() -> Any:
    bot = await start_bot("tests/support/interrupt_bot.py")
    yield bot
    await bot.close()


async def test_an_interruption_that_asks_its_own_question_over_telegram(interrupting: Bot) -> None:
    bot = interrupting
    await bot.post(message(ANN, text="hi"))
    await bot.post(message(ANN, text="/feedback"))
    stars = bot.fake.sent(42)[-1]
    assert stars.text == "How many stars?" and [b[0] for b in stars.buttons()] == ["1", "2", "3"]
    await bot.post(press(ANN, stars.buttons()[1][1], text=stars.text, reply_markup=stars.params["reply_markup"]))
    assert bot.fake.texts(42)[-2:] == ["Thanks for 2 stars.", "Your name?"]
    await bot.post(message(ANN, text="What can I do?"))
    assert bot.fake.texts(42)[-2:] == [HELP, "Your name?"]
    session = await bot.store.load(SessionKey(f"telegram:{BOT_ID}:42", bot.engine.app))
    assert session is not None and "interrupt" not in (session.state or {})
